"""The plugin system: real entry points, every hook delivered, and isolation of plugins that misbehave.

Test plugins are real distributions: a module and a ``.dist-info`` folder with ``entry_points.txt`` on
``sys.path``, found by ``importlib.metadata`` exactly as a pip-installed plugin is.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import REPO, desk_settings
from contactcenter import hookspecs
from contactcenter.cli import cli
from contactcenter.dispatch import decode_event, encode_event
from contactcenter.plugins import PluginHost
from contactcenter.settings import SettingsError
from contactcenter.storage import Database
from tests.factories import RECORDER, event_arguments, install_plugin

ALL_HOOKS = [name for name, value in vars(hookspecs).items()
             if callable(value) and hasattr(value, "contactcenter_spec")]

HostFactory = Callable[..., PluginHost]


@pytest.fixture
def make_host(desk: Path, tmp_path: Path) -> Iterator[HostFactory]:
    hosts: list[PluginHost] = []

    def build(enabled: list[str], timeout: float = 2.0, database_url: str | None = None,
              **environ: str) -> PluginHost:
        url = database_url or f"sqlite:///{tmp_path / 'store.db'}"
        env = {"CONTACTCENTER_PLUGINS__ENABLED": repr(enabled).replace("'", '"'),
               "CONTACTCENTER_PLUGINS__HOOK_TIMEOUT_SECONDS": str(timeout), **environ}
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
        spec = getattr(hookspecs, hook)
        doc = inspect.getdoc(spec) or ""
        assert len(doc) > 40, f"{hook} has no real docstring"
        for parameter in inspect.signature(spec).parameters:
            assert f":param {parameter}:" in doc, f"{hook}: parameter {parameter} is not documented"
        assert "Return value" in doc or hook in hookspecs.EVENT_HOOKS, f"{hook}: return value not documented"


def test_every_hook_is_in_the_plugin_guide_with_an_example() -> None:
    guide = (REPO / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    for hook in ALL_HOOKS:
        parameters = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        heading = f"## {hook}({parameters})"
        assert heading in guide, f"docs/plugin_hooks.md lacks the section {heading!r}"
        section = guide.split(heading, 1)[1].split("\n## ", 1)[0]
        assert f"def {hook}(" in section, f"the {hook} section has no example"


def test_every_hook_has_a_test() -> None:
    tests = set(re.findall(r"^def (test_hook_\w+)\(", Path(__file__).read_text(encoding="utf-8"), re.M))
    missing = {f"test_hook_{hook}" for hook in ALL_HOOKS} - tests
    assert not missing, f"hooks without a test: {sorted(missing)}"


def test_event_hooks_are_exactly_the_non_registration_hooks() -> None:
    assert set(hookspecs.EVENT_HOOKS) == set(ALL_HOOKS) - {"register_commands", "register_settings"}


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


def test_hook_register_commands(site: Path, desk: Path, tmp_path: Path) -> None:
    install_plugin(site, "greeter", """
        import click
        from contactcenter import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def greet(name):
                "Greet someone (from a plugin)."
                click.echo(f"您好, {name}")
    """)
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_PLUGINS__ENABLED": '["greeter"]',
           "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cli.db'}"}
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
    deadline = time.monotonic() + 10
    while len(host.undelivered.pending("hanger")) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(host.undelivered.pending("hanger")) == 1  # only the one never started is left
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


def test_an_undelivered_event_is_spooled_when_the_database_is_down(site: Path, make_host: HostFactory,
                                                                   tmp_path: Path) -> None:
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
    for hook in hookspecs.EVENT_HOOKS:
        arguments = event_arguments(hook)
        assert decode_event(hook, encode_event(hook, arguments)) == arguments


def test_only_event_hooks_can_be_notified(recorder: PluginHost) -> None:
    with pytest.raises(ValueError, match="not an event hook"):
        recorder.dispatcher.notify("register_commands", cli=None)


def test_plugins_list_and_replay_on_the_command_line(site: Path, desk: Path, tmp_path: Path) -> None:
    install_plugin(site, "raiser", RAISER)
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_PLUGINS__ENABLED": '["tickets", "raiser"]',
           "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cli.db'}"}
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
