"""The plugin system: real entry points, every hook delivered, isolation of plugins that misbehave (a slow one
delays nobody else), the one list of built-in plugins, and switching plugins on and off in settings.toml.

Test plugins are real distributions: a module and a ``.dist-info`` folder with ``entry_points.txt`` on
``sys.path``, found by ``importlib.metadata`` exactly as a pip-installed plugin is.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from contactcenter.cli import cli
from contactcenter.hooks import spec
from contactcenter.hooks.delivery import decode_event, encode_event
from contactcenter.hooks.host import BUILT_IN_PLUGINS, PluginHost, describe_plugins
from contactcenter.settings import SettingsError, load_settings
from contactcenter.storage import Database
from tests.helpers.factories import RECORDER, event_arguments, install_plugin
from tests.helpers.paths import REPO
from tests.helpers.settings import desk_settings
from tests.helpers.waiting import wait_until

ALL_HOOKS = [name for name, value in vars(spec).items() if callable(value) and hasattr(value, "contactcenter_spec")]

HostFactory = Callable[..., PluginHost]


@pytest.fixture
def make_host(desk: Path, tmp_path: Path) -> Iterator[HostFactory]:
    hosts: list[PluginHost] = []

    def build(enabled: list[str], timeout: float = 2.0, database_url: str | None = None, **environ: str) -> PluginHost:
        url = database_url or f"sqlite:///{tmp_path / 'store.db'}"
        env = {
            "CONTACTCENTER_PLUGINS__ENABLED": repr(enabled).replace("'", '"'),
            "CONTACTCENTER_PLUGINS__HOOK_TIMEOUT_SECONDS": str(timeout),
            **environ,
        }
        settings = desk_settings(desk, url, env)
        database = Database(url)
        database.upgrade()
        host = PluginHost(settings, database)
        host.load_entry_points()
        hosts.append(host)
        return host

    yield build
    for host in hosts:
        host.close()


def recorded(host: PluginHost, name: str) -> list[tuple[str, dict]]:
    return host.pm.get_plugin(name).CALLS


def deliver(host: PluginHost, hook: str) -> dict:
    """Deliver a plausible event to the 'recorder' plugin; return what it received."""
    arguments = event_arguments(hook)
    delivery = host.dispatcher.notify(hook, **arguments)
    assert delivery.delivered == ["recorder"] and delivery.failed == {}
    [(name, received)] = recorded(host, "recorder")
    assert name == hook
    api = received.pop("api")
    assert api.plugin_name == "recorder"
    assert received == arguments
    return received


@pytest.fixture
def recorder(site: Path, make_host: HostFactory) -> PluginHost:
    install_plugin(site, "recorder", RECORDER)
    return make_host(["recorder"])


# ------------------------------------------------------------------------------- documentation and coverage


def test_every_hook_is_documented_in_its_spec() -> None:
    for hook in ALL_HOOKS:
        hookspec = getattr(spec, hook)
        doc = inspect.getdoc(hookspec) or ""
        assert len(doc) > 40, f"{hook} has no real docstring"
        for parameter in inspect.signature(hookspec).parameters:
            assert f":param {parameter}:" in doc, f"{hook}: parameter {parameter} is not documented"
        assert "Return value" in doc or hook in spec.EVENT_HOOKS, f"{hook}: return value not documented"


def test_every_hook_is_in_the_plugin_guide_with_an_example() -> None:
    guide = (REPO / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    for hook in ALL_HOOKS:
        parameters = ", ".join(inspect.signature(getattr(spec, hook)).parameters)
        heading = f"## {hook}({parameters})"
        assert heading in guide, f"docs/plugin_hooks.md lacks the section {heading!r}"
        section = guide.split(heading, 1)[1].split("\n## ", 1)[0]
        assert f"def {hook}(" in section, f"the {hook} section has no example"


def test_every_hook_has_a_test() -> None:
    tests = set(re.findall(r"^def (test_hook_\w+)\(", Path(__file__).read_text(encoding="utf-8"), re.MULTILINE))
    missing = {f"test_hook_{hook}" for hook in ALL_HOOKS} - tests
    assert not missing, f"hooks without a test: {sorted(missing)}"


def test_event_hooks_are_exactly_the_non_registration_hooks() -> None:
    assert set(spec.EVENT_HOOKS) == set(ALL_HOOKS) - {"register_commands", "register_settings", *spec.REQUEST_HOOKS}


# ----------------------------------------------------------------------------------- every hook delivered


def test_hook_call_ringing(recorder: PluginHost) -> None:
    received = deliver(recorder, "call_ringing")
    assert received["call"].answered_at is None


def test_hook_call_answered(recorder: PluginHost) -> None:
    assert deliver(recorder, "call_answered")["call"].rings_before_answer == 2


def test_hook_utterance(recorder: PluginHost) -> None:
    assert deliver(recorder, "utterance")["utterance"].leg == "customer"


def test_hook_rule_hit(recorder: PluginHost) -> None:
    hit = deliver(recorder, "rule_hit")["hit"]
    assert hit.kind == "violation" and hit.matched_text == "我不知道"


def test_hook_call_ended(recorder: PluginHost) -> None:
    received = deliver(recorder, "call_ended")
    assert [r.rule_id for r in received["report"].failed] == ["closing"]
    assert received["transcript"][0].leg == "agent"


def test_hook_call_wrapped_up(recorder: PluginHost) -> None:
    received = deliver(recorder, "call_wrapped_up")
    assert received["wrap_up"].category == received["call"].category == "报修"
    assert [c.kind for c in received["wrap_up"].callbacks] == ["next_day"]


def test_hook_ticket_created(recorder: PluginHost) -> None:
    assert deliver(recorder, "ticket_created")["ticket"].category == "投诉"


def test_hook_desk_started(recorder: PluginHost) -> None:
    assert deliver(recorder, "desk_started")["role"] == "desk"


def test_hook_callback_closed(recorder: PluginHost) -> None:
    closed = deliver(recorder, "callback_closed")["callback"]
    assert closed.state == "done" and closed.last_outcome == "answered"


def test_hook_callback_due(recorder: PluginHost) -> None:
    assert deliver(recorder, "callback_due")["callback"].reason == "次日回访"


def test_hook_survey_completed(recorder: PluginHost) -> None:
    assert deliver(recorder, "survey_completed")["survey"].answers == {"satisfaction": 5, "speed": None}


FORGETFUL = """
from contactcenter import hookimpl

@hookimpl
def forget_customer(phone, phone_key, api):
    api.outbox_put("erase", {"key": phone_key}, key="erase")
    return f"erased {phone_key} ({phone}) from {api.plugin_name}"
"""


def test_hook_forget_customer(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "forgetful", FORGETFUL)
    install_plugin(site, "broken", "from contactcenter import hookimpl\n@hookimpl\ndef forget_customer():\n    1 / 0\n")
    install_plugin(
        site, "silent", "from contactcenter import hookimpl\n@hookimpl\ndef forget_customer(phone_key):\n    pass\n"
    )
    host = make_host(["forgetful", "broken", "silent"])
    answers = {name: (said, error) for name, said, error in host.forget_customer("138-0013-8000", "13800138000")}
    assert answers == {
        "forgetful": ("erased 13800138000 (138-0013-8000) from forgetful", None),
        "broken": (None, "ZeroDivisionError: division by zero"),  # reported; the others still asked
        "silent": (None, None),
    }
    assert [item.payload for item in host.api_for("forgetful").outbox_items()] == [{"key": "13800138000"}]


def test_hook_register_commands(site: Path, desk: Path, tmp_path: Path) -> None:
    install_plugin(
        site,
        "greeter",
        """
        import click
        from contactcenter import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def greet(name):
                "Greet someone (from a plugin)."
                click.echo(f"您好, {name}")
    """,
    )
    env = {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_PLUGINS__ENABLED": '["greeter"]',
        "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    group = click.Group(commands=dict(cli.commands))  # a copy, so the global CLI is not changed
    from contactcenter.app import App

    app = App(desk)
    app.__dict__["settings"] = desk_settings(desk, env["CONTACTCENTER_DATABASE__URL"], env)
    app.plugins.add_commands(group)
    result = CliRunner().invoke(group, ["greet", "王芳"])
    app.close()
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "您好, 王芳"


def test_hook_register_settings(site: Path, make_host: HostFactory) -> None:
    source = """
        from pydantic import BaseModel, ConfigDict
        from contactcenter import hookimpl

        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid")
            url: str = "http://127.0.0.1:9/hook"
            retries: int = 3

        @hookimpl
        def register_settings():
            return Options
    """
    install_plugin(site, "crm", source)
    host = make_host(["crm"], CONTACTCENTER_PLUGINS__CRM__RETRIES="5")
    assert host.options("crm").retries == 5 and host.api_for("crm").options.url == "http://127.0.0.1:9/hook"
    with pytest.raises(SettingsError) as caught:
        make_host(["crm"], CONTACTCENTER_PLUGINS__CRM__RETRIES="many")
    assert "[plugins.crm] retries" in caught.value.problems[0]
    with pytest.raises(SettingsError) as caught:
        make_host(["crm"], CONTACTCENTER_PLUGINS__CRM__URLL="x")
    assert "[plugins.crm] urll: unknown key" in caught.value.problems[0]


# --------------------------------------------------------------------------------------------- isolation

RAISER = """
    from contactcenter import hookimpl
    FAIL = [True]
    CALLS = []

    @hookimpl
    def call_ended(call):
        if FAIL[0]:
            raise RuntimeError("CRM said no")
        CALLS.append(call.sip_call_id)
"""

HANGER = """
    import threading
    from contactcenter import hookimpl
    RELEASE = threading.Event()
    CALLS = []

    @hookimpl
    def call_ended(call):
        RELEASE.wait(60)
        CALLS.append(call.sip_call_id)
"""


def test_a_plugin_that_raises_is_isolated_and_its_event_replayed(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "raiser", RAISER)
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["raiser", "recorder"])
    arguments = event_arguments("call_ended")

    delivery = host.dispatcher.notify("call_ended", **arguments)

    assert delivery.delivered == ["recorder"]
    assert delivery.failed == {"raiser": "RuntimeError: CRM said no"}
    [pending] = host.undelivered.pending()
    assert (pending.plugin, pending.hook) == ("raiser", "call_ended")
    assert decode_event("call_ended", pending.payload) == arguments

    assert host.dispatcher.replay().failed  # still failing: kept, attempts counted
    assert host.undelivered.pending()[0].attempts == 2

    host.pm.get_plugin("raiser").FAIL[0] = False
    result = host.dispatcher.replay()
    assert result.delivered == [f"raiser#{pending.id}"] and not result.failed
    assert recorded(host, "raiser") == [arguments["call"].sip_call_id]
    assert host.undelivered.pending() == []
    assert len(recorded(host, "recorder")) == 1  # replay goes only to the plugin that missed it


def test_a_plugin_that_hangs_is_cut_off_and_others_still_run(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "hanger", HANGER)
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["hanger", "recorder"], timeout=0.5)
    arguments = event_arguments("call_ended")

    started = time.monotonic()
    first = host.dispatcher.notify("call_ended", **arguments)
    second = host.dispatcher.notify("call_ended", **arguments)
    elapsed = time.monotonic() - started

    assert first.failed == {"hanger": "timed out after 0.5 s"}
    assert second.failed["hanger"].startswith("still busy with an earlier hook call")
    assert first.delivered == second.delivered == ["recorder"]
    assert elapsed < 30  # bounded by the time limit, not by the plugin (which would block 60 s)
    assert [p.hook for p in host.undelivered.pending("hanger")] == ["call_ended", "call_ended"]

    host.pm.get_plugin("hanger").RELEASE.set()  # the first call finishes late: it did deliver after all
    # only the one never started is left
    assert wait_until(lambda: len(host.undelivered.pending("hanger")) == 1, 10)
    assert host.dispatcher.replay().delivered
    assert len(recorded(host, "hanger")) == 2


def test_publishing_never_waits_for_a_hanging_plugin(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "hanger", HANGER)
    host = make_host(["hanger"], timeout=30)
    for _ in range(20):
        host.bus.publish("call_ended", **event_arguments("call_ended"))
    # every publish returned while the plugin was still stuck in the first event
    assert recorded(host, "hanger") == []
    host.pm.get_plugin("hanger").RELEASE.set()
    host.bus.drain()
    assert len(recorded(host, "hanger")) == 20


SLEEPER = """
    import time
    from contactcenter import hookimpl
    SLOW = [True]  # only the first call is slow
    CALLS = []

    @hookimpl
    def call_ended(call):
        if SLOW[0]:
            SLOW[0] = False
            time.sleep(3.0)
        CALLS.append(call.sip_call_id)
"""

WATCHER = """
    import threading
    import time
    from contactcenter import hookimpl
    CALLS = []  # (sip_call_id, when received: time.monotonic())
    ALL_THREE = threading.Event()

    @hookimpl
    def call_ended(call):
        CALLS.append((call.sip_call_id, time.monotonic()))
        if len(CALLS) == 3:
            ALL_THREE.set()
"""


def ended_calls(count: int) -> list[dict]:
    base = event_arguments("call_ended")
    return [{**base, "call": base["call"].model_copy(update={"sip_call_id": f"call-{n}"})} for n in range(count)]


def test_a_plugin_that_sleeps_past_its_timeout_does_not_delay_another_plugins_delivery(
    site: Path, make_host: HostFactory
) -> None:
    install_plugin(site, "sleeper", SLEEPER)
    install_plugin(site, "watcher", WATCHER)
    # The sleeper is registered last, so pluggy's order (and the old one-thread delivery) served it first.
    host = make_host(["watcher", "sleeper"], timeout=1.0)
    sleeper, watcher = host.pm.get_plugin("sleeper"), host.pm.get_plugin("watcher")
    events = ended_calls(3)

    published = time.monotonic()
    for arguments in events:
        host.bus.publish("call_ended", **arguments)

    assert watcher.ALL_THREE.wait(timeout=1.0), "the watcher waited for the sleeping plugin"
    assert [call for call, _ in watcher.CALLS] == ["call-0", "call-1", "call-2"]
    first_received = watcher.CALLS[0][1] - published
    assert first_received < 0.5  # the sleeper sleeps 3 s; delivered one after the other it would be >= 1 s
    assert sleeper.CALLS == []  # still asleep in call-0

    host.bus.drain()  # the sleeper: call-0 timed out, call-1 and call-2 went straight to the undelivered log
    pending = host.undelivered.pending("sleeper")
    assert [decode_event(p.hook, p.payload)["call"].sip_call_id for p in pending] == ["call-0", "call-1", "call-2"]
    # call-0 finishes late: delivered after all, so only the two never started are left to replay
    assert wait_until(lambda: len(host.undelivered.pending("sleeper")) == 2, 10)
    assert sleeper.CALLS == ["call-0"]
    result = host.dispatcher.replay("sleeper")
    assert len(result.delivered) == 2 and not result.failed
    assert sleeper.CALLS == ["call-0", "call-1", "call-2"]  # replayed in the order they happened
    assert host.undelivered.pending() == []


JITTERY = """
    import time
    from contactcenter import hookimpl
    CALLS = []

    @hookimpl
    def utterance(call, utterance):
        time.sleep(0.002 * (len(CALLS) % 3))  # uneven work per event
        CALLS.append(utterance.start_s)
"""


def test_each_plugin_gets_the_events_in_the_order_they_were_published(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "jittery", JITTERY)
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["jittery", "recorder"])
    base = event_arguments("utterance")
    starts = [float(n) for n in range(60)]
    publishers = [
        threading.Thread(
            target=lambda part=part: [
                host.bus.publish(
                    "utterance", call=base["call"], utterance=base["utterance"].model_copy(update={"start_s": s})
                )
                for s in part
            ]
        )
        for part in (starts[:30], starts[30:])
    ]
    for thread in publishers:  # two publishing threads at once: every plugin still sees one and the same order
        thread.start()
    for thread in publishers:
        thread.join()
    host.bus.drain()
    jittery = host.pm.get_plugin("jittery").CALLS
    recorder = [received["utterance"].start_s for _, received in recorded(host, "recorder")]
    assert sorted(jittery) == starts and jittery == recorder
    assert [s for s in jittery if s < 30] == starts[:30] and [s for s in jittery if s >= 30] == starts[30:]


TICKETER = """
    from contactcenter import hookimpl

    @hookimpl
    def call_ended(call, api):
        api.create_ticket(call_id=None, category="投诉", caller_phone=call.remote_number)
"""


def test_drain_waits_for_the_events_deliveries_publish_in_turn(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "ticketer", TICKETER)
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["ticketer", "recorder"])
    host.bus.publish("call_ended", **event_arguments("call_ended"))
    host.bus.drain()
    assert [hook for hook, _ in recorded(host, "recorder")] == ["call_ended", "ticket_created"]


def test_a_plugin_that_fails_to_import_does_not_stop_the_others(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "broken", "import module_that_does_not_exist_anywhere\n")
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["broken", "recorder"])

    assert "ModuleNotFoundError" in host.import_errors["broken"]
    delivery = host.dispatcher.notify("call_ringing", **event_arguments("call_ringing"))
    assert delivery.delivered == ["recorder"] and delivery.failed == {}
    infos = {info.name: info for info in host.infos()}
    assert infos["broken"].status == "import failed" and "module_that_does_not_exist" in infos["broken"].error
    assert infos["recorder"].status == "loaded" and infos["recorder"].version == "1.0"
    assert "call_ended" in infos["recorder"].hooks


def test_only_enabled_plugins_run(site: Path, make_host: HostFactory) -> None:
    install_plugin(site, "recorder", RECORDER)
    host = make_host(["ghost"])
    assert host.dispatcher.notify("call_ringing", **event_arguments("call_ringing")).delivered == []
    infos = {info.name: info for info in host.infos()}
    assert infos["recorder"].status == "disabled" and not infos["recorder"].enabled
    assert infos["ghost"].status == "not installed" and infos["ghost"].enabled
    assert infos["tickets"].status == "disabled"  # the first-party plugin is installed like any other


def test_an_undelivered_event_is_spooled_when_the_database_is_down(
    site: Path, make_host: HostFactory, tmp_path: Path
) -> None:
    install_plugin(site, "raiser", RAISER)
    host = make_host(["raiser"])
    host.undelivered.database = Database("postgresql+psycopg://nobody@127.0.0.1:1/down")
    arguments = event_arguments("call_ended")
    assert host.dispatcher.notify("call_ended", **arguments).failed
    spool = host.undelivered.spool_file
    assert spool.exists() and "CRM said no" in spool.read_text(encoding="utf-8")

    host.undelivered.database = host.database  # the database is back
    host.pm.get_plugin("raiser").FAIL[0] = False
    result = host.dispatcher.replay()
    assert len(result.delivered) == 1 and not spool.exists()
    assert recorded(host, "raiser") == [arguments["call"].sip_call_id]


def test_events_survive_a_json_round_trip() -> None:
    for hook in spec.EVENT_HOOKS:
        arguments = event_arguments(hook)
        assert decode_event(hook, encode_event(hook, arguments)) == arguments


def test_only_event_hooks_can_be_notified(recorder: PluginHost) -> None:
    with pytest.raises(ValueError, match="not an event hook"):
        recorder.dispatcher.notify("register_commands", cli=None)


def test_plugins_list_and_replay_on_the_command_line(site: Path, desk: Path, tmp_path: Path) -> None:
    install_plugin(site, "raiser", RAISER)
    env = {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_PLUGINS__ENABLED": '["tickets", "raiser"]',
        "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    runner = CliRunner()
    listed = runner.invoke(cli, ["plugins", "list", "--format", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    import json

    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert rows["tickets"]["enabled"] is True and rows["tickets"]["status"] == "loaded"
    assert rows["tickets"]["distribution"] == "contactcenter-tickets" and "call_ended" in rows["tickets"]["hooks"]
    assert rows["raiser"]["status"] == "loaded"

    missing_schema = runner.invoke(cli, ["plugins", "replay"], env=env)
    assert missing_schema.exit_code == 3 and "run `contactcenter db upgrade`" in missing_schema.output
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    replayed = runner.invoke(cli, ["plugins", "replay"], env=env)
    assert replayed.exit_code == 0 and "delivered 0, still failing 0" in replayed.output


# ------------------------------------------------------------------------------------ the hooks package


def test_the_built_in_plugins_are_listed_once_and_registered_by_every_desk(desk: Path, tmp_path: Path) -> None:
    from contactcenter.app import App

    for name, module in BUILT_IN_PLUGINS.items():
        assert importlib.import_module(module).NAME == name
    app = App(desk)
    app.__dict__["settings"] = desk_settings(desk, f"sqlite:///{tmp_path / 'store.db'}")
    try:
        registered = {name for name, _ in app.plugins.pm.list_name_plugin()}
    finally:
        app.close()
    assert set(BUILT_IN_PLUGINS) <= registered
    described = {info.name: info for info in describe_plugins(app.settings)}
    assert all(described[name].status == "built in" and described[name].hooks for name in BUILT_IN_PLUGINS)


def test_the_hooks_package_imports_only_downward() -> None:
    """Importing the whole plugin contract loads no layer above it (telephony, speech, scheduling, web ...)."""
    probe = (
        "import json, sys; import contactcenter.hooks.host, contactcenter.hooks.api; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('contactcenter'))))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout
    )
    above = {"telephony", "speech", "scheduling", "web", "qa", "app", "commands", "cli", "media"}
    assert not [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in above], loaded
    spec_only = "import json, sys; import contactcenter.hooks.spec; print(json.dumps(sorted(sys.modules)))"
    assert "contactcenter.hooks.api" not in json.loads(
        subprocess.run(  # the spec names the API for typing only
            [sys.executable, "-c", spec_only], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout
    )


# ------------------------------------------------------------------------------ plugins enable / disable


def test_plugins_enable_and_disable_edit_settings_and_keep_its_comments(site: Path, desk: Path) -> None:
    install_plugin(site, "recorder", RECORDER)
    runner = CliRunner()
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_PLUGINS__ENABLED": None}
    original = desk.read_text(encoding="utf-8")
    assert "# names of installed plugins" in original and 'enabled = ["tickets"]' in original

    enabled = runner.invoke(cli, ["plugins", "enable", "recorder"], env=env)
    assert enabled.exit_code == 0, enabled.output
    assert "enabled recorder" in enabled.output
    text = desk.read_text(encoding="utf-8")
    assert load_settings(desk, {}).plugins.enabled == ["tickets", "recorder"]
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines(), strict=True) if a != b]
    assert len(original.splitlines()) == len(text.splitlines()) and len(changed) == 1  # only that line
    assert changed[0][1].startswith('enabled = ["tickets", "recorder"]')
    assert changed[0][1].endswith('# names of installed plugins (entry-point group "contactcenter") to run')

    again = runner.invoke(cli, ["plugins", "enable", "recorder"], env=env)
    assert again.exit_code == 0 and "already enabled" in again.output
    assert desk.read_text(encoding="utf-8") == text

    disabled = runner.invoke(cli, ["plugins", "disable", "recorder"], env=env)
    assert disabled.exit_code == 0, disabled.output
    assert load_settings(desk, {}).plugins.enabled == ["tickets"]
    assert "# names of installed plugins" in desk.read_text(encoding="utf-8")
    assert "# Every ended call becomes a ticket" in desk.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["enable", "ghost"], 1, "no plugin named 'ghost' is installed"),
        (["disable", "ghost"], 1, "no plugin named 'ghost' is installed or enabled"),
        (["enable", "callbacks"], 0, "callbacks is built in and always on"),
        (["disable", "live_view"], 1, "live_view is built in and always on; it cannot be disabled"),
        (["disable", "survey"], 0, "survey is not enabled"),
    ],
)
def test_plugins_enable_and_disable_refuse_what_they_cannot_do_and_leave_the_file_alone(
    desk: Path, args: list[str], exit_code: int, message: str
) -> None:
    before = desk.read_bytes()
    result = CliRunner().invoke(
        cli, ["plugins", *args], env={"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_PLUGINS__ENABLED": None}
    )
    assert result.exit_code == exit_code, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert desk.read_bytes() == before
