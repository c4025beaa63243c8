"""Every command meets a database it cannot use (read-only, locked, down) with one line and a non-zero exit: no
traceback, no SQL parameters (a new user's Argon2 hash), no password from the database URL."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from contactcenter.cli import DeskGroup, cli, one_line
from contactcenter.settings import load_settings
from contactcenter.telephony.prompt_builder import script_lines
from tests.helpers.settings import make_desk

PASSWORD = "Tq8#vLm2-correct-horse-9"  # a user's, typed on the command line
DB_PASSWORD = "S3cret-Pw-9x"  # in the PostgreSQL URL of the "down" database
PHONE = "13800138000"

#: Minimal valid arguments for every command, and what it does with the database: "write" must fail on a
#: read-only or locked database, "read" on a fully locked or unreachable one, "none" may succeed anywhere.
COMMANDS: dict[tuple[str, ...], tuple[list[str], str]] = {
    ("agents", "list"): ([], "read"),
    ("agents", "set"): (["1001", "--name", "张三"], "write"),
    ("audit",): (["{wav}"], "write"),
    ("audit-worker",): (["--until-done"], "write"),  # needs PostgreSQL: on SQLite it says so in one line
    ("callbacks", "list"): ([], "read"),
    ("callbacks", "add"): ([PHONE, "--reason", "回访"], "write"),
    ("callbacks", "done"): (["1"], "write"),
    ("callbacks", "missed"): (["1"], "write"),
    ("callbacks", "cancel"): (["1"], "write"),
    ("customers", "import"): (["{new_customers}"], "write"),
    ("customers", "show"): ([PHONE], "read"),
    ("customers", "history"): ([PHONE], "read"),
    ("customers", "forget"): ([PHONE, "--yes"], "write"),
    ("retention", "purge"): ([], "write"),  # records that the purge ran, even with nothing to purge
    ("retention", "log"): ([], "read"),
    ("review", "build"): (["--day", "2026-11-02"], "read"),  # the seeded store has no reviewer: nothing to write
    ("review", "status"): ([], "read"),
    ("review", "calibration"): ([], "read"),
    ("db", "upgrade"): ([], "read"),  # at head already: nothing to write
    ("db", "current"): ([], "read"),
    ("devices",): ([], "none"),
    ("evaluate",): (["{transcripts}", "--labels", "{labels}"], "none"),  # reads the console's rule changes if it can
    ("models", "verify"): ([], "none"),
    ("plugins", "list"): ([], "none"),
    ("plugins", "enable"): (["no-such-plugin"], "none"),
    ("plugins", "disable"): (["no-such-plugin"], "none"),
    ("plugins", "undelivered"): ([], "read"),
    ("plugins", "replay"): ([], "read"),
    ("prompts", "list"): ([], "none"),
    ("prompts", "build"): ([], "none"),
    ("registrar", "config"): ([], "none"),
    ("rules", "list"): ([], "none"),  # falls back to the file's rules, with a note
    ("rules", "test"): (["您好"], "none"),
    ("tickets", "list"): ([], "read"),
    ("tickets", "show"): (["1"], "read"),
    ("users", "add"): (["clerk", "--role", "reviewer", "--password", PASSWORD], "write"),
    ("users", "list"): ([], "read"),
    ("users", "disable"): (["boss"], "write"),
    ("users", "password"): (["boss", "--password", PASSWORD + "-new"], "write"),
    ("users", "unlock"): (["boss"], "read"),  # nothing locked: nothing to write
    ("users", "locks"): ([], "read"),
    ("users", "log"): ([], "read"),
}
#: Commands that serve until Ctrl-C, call out (SIPp, pip, the model download): not run here.
LONG_RUNNING = {("run",), ("web",), ("scheduler",), ("demo-call",), ("plugins", "install"), ("models", "fetch")}

#: How each broken database is made, and which kinds of command must fail on it.
FAILS_ON = {
    "read-only": {"write"},
    "write-locked": {"write"},  # another process in a write transaction (WAL: readers go on)
    "fully-locked": {"write", "read"},  # another process holds an exclusive lock in rollback-journal mode
    "down": {"write", "read"},  # PostgreSQL not listening, its password in the URL
}


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def test_the_table_names_every_command() -> None:
    """A new command must say here how it uses the database, so it is swept like the others."""
    assert set(leaf_commands(cli)) == set(COMMANDS) | LONG_RUNNING


@dataclass
class Store:
    """A desk and a seeded SQLite store (callback 1, a customer, user "boss") to copy per case."""

    desk: Path
    database: Path
    files: dict[str, str]


def clean_env(**variables: str) -> dict[str, str | None]:
    """CliRunner's environment: these variables, and none of the CONTACTCENTER_ ones the test run has."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CONTACTCENTER_")}
    env.update(variables)
    return env


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("cli-errors")
    desk = make_desk(root / "desk")
    settings = load_settings(desk, {})
    for key in script_lines(settings):  # recorded already: `prompts build` has nothing slow to speak
        write_wav(settings.scripts.prompts_dir / f"{key}.wav")
    wav = root / "call.wav"
    write_wav(wav)
    csv = root / "customers.csv"
    csv.write_text(f"姓名,电话\n李四,{PHONE}\n", encoding="utf-8")
    new_customers = root / "new-customers.csv"
    new_customers.write_text("姓名,电话\n王五,13900139000\n", encoding="utf-8")
    transcripts = root / "calls.jsonl"
    transcripts.write_text('{"call": "c1", "leg": "agent", "start": 0.5, "end": 2, "text": "您好"}\n', encoding="utf-8")
    labels = root / "labels.csv"
    labels.write_text("c1,greeting,satisfied\n", encoding="utf-8")
    database = root / "seed" / "desk.db"
    env = clean_env(CONTACTCENTER_SETTINGS=str(desk), CONTACTCENTER_DATABASE__URL=f"sqlite:///{database}")
    for args in (
        ["db", "upgrade"],
        ["callbacks", "add", PHONE],
        ["customers", "import", str(csv)],
        ["users", "add", "boss", "--role", "admin", "--password", PASSWORD],
    ):
        seeded = invoke(args, env)
        assert seeded.exit_code == 0, (args, seeded.output)
    files = {
        "wav": str(wav),
        "new_customers": str(new_customers),
        "transcripts": str(transcripts),
        "labels": str(labels),
    }
    return Store(desk, database, files)


def write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens there once the probe is closed


@pytest.fixture(scope="module", params=list(FAILS_ON))
def broken(request: pytest.FixtureRequest, store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """(the case) a URL to a copy of the seeded store, broken as the case says; the lock held meanwhile."""
    case: str = request.param
    folder = tmp_path_factory.mktemp(case)
    copy = folder / "desk.db"
    shutil.copy(store.database, copy)
    holder: sqlite3.Connection | None = None
    if case == "read-only":
        url = f"sqlite:///file:{copy}?mode=ro&uri=true"  # chmod would not stop root, which tests may run as
    elif case == "down":
        url = f"postgresql+psycopg://desk:{DB_PASSWORD}@127.0.0.1:{closed_port()}/desk"
    else:
        holder = sqlite3.connect(copy, isolation_level=None)
        if case == "fully-locked":
            holder.execute("PRAGMA journal_mode=DELETE")  # so the exclusive lock shuts readers out too
            holder.execute("BEGIN EXCLUSIVE")
        else:
            holder.execute("BEGIN IMMEDIATE")
        url = f"sqlite:///{copy}?timeout=0.05"  # not 5 s per command
    yield f"{case}|{url}"
    if holder is not None:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_a_broken_database_is_one_line(path: tuple[str, ...], broken: str, store: Store) -> None:
    """The command fails (when it needed the database) with one line: no traceback, hash or password."""
    case, url = broken.split("|", 1)
    template, access = COMMANDS[path]
    args = [*path, *(arg.format(**store.files) for arg in template)]
    result = invoke(args, clean_env(CONTACTCENTER_SETTINGS=str(store.desk), CONTACTCENTER_DATABASE__URL=url))
    said = result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), said
    assert "Usage:" not in said, f"the table's arguments for {' '.join(path)} are not valid"
    assert "Traceback" not in said and "$argon2" not in said and DB_PASSWORD not in said, said
    lines = result.stderr.splitlines()
    if access in FAILS_ON[case]:
        assert result.exit_code != 0, f"{' '.join(path)} succeeded on a {case} database: {said}"
    if result.exit_code != 0:
        assert len(lines) == 1, result.stderr
    else:
        assert len(lines) <= 1, result.stderr


# ------------------------------------------------------------------------------------ the cases from issue 15


def contactcenter(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (main(): plugins are loaded before click parses)."""
    return subprocess.run(
        [sys.executable, "-m", "contactcenter", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def process_env(store: Store, url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update({"CONTACTCENTER_SETTINGS": str(store.desk), "CONTACTCENTER_DATABASE__URL": url, **more})
    return env


def test_users_add_on_a_read_only_database_does_not_print_the_hash(store: Store, tmp_path: Path) -> None:
    """The failed INSERT's parameters hold the new user's Argon2 hash; the user sees only why it failed."""
    url = f"sqlite:///file:{store.database}?mode=ro&uri=true"
    result = contactcenter(
        "users", "add", "clerk", "--role", "reviewer", "--password", PASSWORD, env=process_env(store, url), cwd=tmp_path
    )
    assert result.returncode == 3
    assert result.stderr.splitlines() == [f"error: attempt to write a readonly database (database {url})"]
    assert "$argon2" not in result.stdout + result.stderr


def test_dates_in_year_9999_are_refused(store: Store, tmp_path: Path) -> None:
    copy = tmp_path / "desk.db"
    shutil.copy(store.database, copy)
    env = clean_env(CONTACTCENTER_SETTINGS=str(store.desk), CONTACTCENTER_DATABASE__URL=f"sqlite:///{copy}")
    for due in ("9999-12-31", "1999-12-31 10:00", "2101-01-01"):
        result = invoke(["callbacks", "add", PHONE, "--due", due], env)
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [f"Error: --due: {due[:10]} is outside the years 2000–2100"]
    for option in ("--before", "--after"):
        result = invoke(["callbacks", "list", option, "9999-01-01"], env)
        assert result.stderr.splitlines() == [f"Error: {option}: 9999-01-01 is outside the years 2000–2100"]
    result = invoke(["tickets", "list", "--until", "9999-12-31"], env)  # the day after it overflowed
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: --until: 9999-12-31 is outside the years 2000–2100"]
    listed = invoke(["callbacks", "list", "--json"], env)
    assert listed.exit_code == 0 and listed.stdout.count('"phone"') == 1  # the seeded one only


def test_a_callback_for_a_call_or_ticket_that_does_not_exist_is_refused(store: Store, tmp_path: Path) -> None:
    copy = tmp_path / "desk.db"
    shutil.copy(store.database, copy)
    env = clean_env(CONTACTCENTER_SETTINGS=str(store.desk), CONTACTCENTER_DATABASE__URL=f"sqlite:///{copy}")
    for option in ("--call", "--ticket"):
        result = invoke(["callbacks", "add", PHONE, option, "999"], env)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [f"Error: {option}: no {option[2:]} 999"]
    for args in (["callbacks", "add", PHONE, "--call", "9" * 30], ["tickets", "show", "9" * 30]):
        huge = invoke(args, env)  # was an OverflowError from the SQLite driver
        assert huge.exit_code == 2 and "is not in the range" in huge.stderr and "Traceback" not in huge.output


def test_evaluate_names_the_bad_line_of_a_labels_file(store: Store, tmp_path: Path) -> None:
    """A reviewer's typo in the labels: one line naming the file and line, exit 2, nothing on standard output."""
    labels = tmp_path / "labels.csv"
    labels.write_text("call,rule,expected\nc1,greeting,satisfied\nc1,greting,violation\n", encoding="utf-8")
    env = process_env(store, f"sqlite:///{store.database}")
    result = contactcenter("evaluate", store.files["transcripts"], "--labels", str(labels), env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {labels}:3: unknown rule 'greting' (did you mean 'greeting'?)"]


def test_web_refuses_a_port_it_cannot_have(store: Store, tmp_path: Path) -> None:
    """Out of range: click's usage error. In use: one line naming the address, before anything is served."""
    env = process_env(store, f"sqlite:///{store.database}")
    out_of_range = contactcenter("web", "--port", "99999", env=env, cwd=tmp_path)
    assert out_of_range.returncode == 2 and "Traceback" not in out_of_range.stderr
    assert "Invalid value for '--port': 99999 is not in the range 1<=x<=65535" in out_of_range.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = contactcenter("web", "--port", str(port), env=env, cwd=tmp_path)
    assert in_use.returncode == 5 and in_use.stdout == ""
    assert in_use.stderr.splitlines() == [f"error: cannot listen: Address already in use (127.0.0.1:{port})"]


def test_a_data_dir_that_cannot_be_made_is_one_line(store: Store, tmp_path: Path) -> None:
    """[general] data_dir under a plain file (which stops root too): the folder is named, once."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    data = blocker / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update({"CONTACTCENTER_SETTINGS": str(store.desk), "CONTACTCENTER_GENERAL__DATA_DIR": str(data)})
    result = contactcenter("tickets", "list", env=env, cwd=tmp_path)
    assert result.returncode == 5
    assert result.stderr.splitlines() == [f"error: Not a directory ({data})"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_data_dir_without_write_permission_is_one_line(store: Store, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    env = clean_env(CONTACTCENTER_SETTINGS=str(store.desk), CONTACTCENTER_GENERAL__DATA_DIR=str(locked / "data"))
    result = invoke(["tickets", "list"], env)
    assert result.exit_code == 5
    assert result.stderr.splitlines() == [f"error: Permission denied ({locked / 'data'})"]


def test_a_bug_is_one_line_pointing_to_debug() -> None:
    """An exception nobody expected: one line (what, without secrets) and how to see the traceback."""
    group = DeskGroup("contactcenter")
    group.params.append(click.Option(["--debug"], is_flag=True))

    @group.command("boom")
    def boom() -> None:
        raise RuntimeError(f"cannot reach postgresql://desk:{DB_PASSWORD}@db/desk\nsecond line")

    quiet = CliRunner().invoke(group, ["boom"])
    assert quiet.exit_code == 70 and isinstance(quiet.exception, SystemExit)
    assert quiet.stderr.splitlines() == [
        "error: unexpected RuntimeError: cannot reach postgresql://desk:***@db/desk "
        "(a bug: run again with --debug, or CONTACTCENTER_DEBUG=1, for the traceback)"
    ]
    loud = CliRunner().invoke(group, ["--debug", "boom"])
    assert isinstance(loud.exception, RuntimeError)  # raised on: Python prints the traceback


def test_one_line_hides_what_must_not_be_shown() -> None:
    text = (
        "(sqlite3.OperationalError) attempt to write [SQL: INSERT INTO users VALUES (?)] "
        "[parameters: ('$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA',)]\nmore"
    )
    assert one_line(text) == "(sqlite3.OperationalError) attempt to write"
    assert one_line("hash $argon2id$v=19$abc left") == "hash [hash hidden] left"
    assert one_line("x" * 500).endswith("…") and len(one_line("x" * 500)) == 300
