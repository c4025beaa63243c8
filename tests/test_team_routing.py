"""The team line's parts one at a time: the registrar's routing (Kamailio with SIPp phones), the desk's team
contact (REGISTER, with and without a password), the claim that lets exactly one desk answer (threads racing
on SQLite and PostgreSQL), how a team call's outcome is read, the overflow desk's keys, the settings."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from contactcenter.cli import cli
from contactcenter.settings import SettingsError, load_settings
from contactcenter.storage import team_calls
from contactcenter.storage.models import TeamCall
from contactcenter.telephony.call import cancelled_as_answered_elsewhere, team_routing
from contactcenter.telephony.overflow import number_from_keys
from contactcenter.telephony.registrar import LocalRegistrar, TeamRouting
from contactcenter.telephony.team import ContactAccount, TeamLedger, TeamMembership, idle_q
from tests.helpers.ports import free_port
from tests.helpers.settings import make_desk
from tests.helpers.sip import dtmf_pcap, run_sipp, sipp_scenario, start_sipp

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------- the registrar


def _invite_times(folder: Path, scenario: str) -> list[datetime]:
    """When a SIPp phone traced with ``messages`` received each INVITE."""
    (log,) = folder.glob(f"{Path(scenario).stem}_*_messages.log")
    text = log.read_text(errors="replace")
    stamps = re.findall(
        r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*\n\s*UDP message received.*\n\s*\nINVITE ", text, re.M
    )
    return [datetime.fromisoformat(stamp) for stamp in stamps]


PHONES = (("busy", "uas_busy.xml", 0.9), ("answerer", "uas_callee.xml", 0.5))


def _phones_on_the_team(
    tmp_path: Path, routing: TeamRouting, *, dead_contact: bool = False
) -> tuple[dict[str, datetime], subprocess.CompletedProcess]:
    """SIPp phones registered for the team number (a busy one, 486 at once, q 0.9; one that answers after 1 s,
    q 0.5; with ``dead_contact`` first a contact with q 1.0 where nothing listens, as a desk that died leaves)
    and a customer calling the team number: when each phone got its INVITE, and the customer's result."""
    registrar = LocalRegistrar("127.0.0.1", free_port(), team=routing)
    registrar.start()
    phones, memberships = [], []

    def register(name: str, port: int, q: float) -> None:
        membership = TeamMembership(
            ContactAccount("127.0.0.1", registrar.port, name, "", "127.0.0.1", port), routing.number, 60
        )
        membership.want(True, q)
        membership.start()
        assert membership.wait_registered(True, 5), membership.last_error
        memberships.append(membership)

    try:
        if dead_contact:
            register("dead", free_port(), 1.0)
        for name, scenario, q in PHONES:
            folder = tmp_path / name
            folder.mkdir()
            port = free_port()
            phones.append((name, folder, scenario, start_sipp(sipp_scenario(scenario, folder), port, messages=True)))
            register(name, port, q)
        customer = sipp_scenario(
            "uac_team.xml", tmp_path, pcap=dtmf_pcap(tmp_path, ""), CALLER="13800000001", TALK_MS=500
        )
        started = datetime.now()
        result = run_sipp(
            customer, remote=f"127.0.0.1:{registrar.port}", service=routing.number, timeout=20, messages=True
        )
        for _name, _folder, _scenario, process in phones:
            process.wait(timeout=30)
        times = {"customer": started}
        for name, folder, scenario, _process in phones:
            (times[name],) = _invite_times(folder, scenario)
        return times, result
    finally:
        for membership in memberships:
            membership.stop()
        for _name, _folder, _scenario, process in phones:
            if process.poll() is None:
                process.kill()
        registrar.stop()


def test_ring_all_rings_every_ready_phone_at_once(tmp_path: Path) -> None:
    times, result = _phones_on_the_team(tmp_path, TeamRouting("1000", "1999", ring_ms=4000))
    assert result.returncode == 0, result.stdout  # the busy phone's 486 did not end the call: the other answered
    assert abs((times["answerer"] - times["busy"]).total_seconds()) < 0.5


def test_longest_idle_rings_by_q_and_moves_on_at_once_from_a_busy_phone_and_soon_from_a_dead_one(
    tmp_path: Path,
) -> None:
    routing = TeamRouting("1000", "1999", ring_ms=5000, longest_idle=True)
    times, result = _phones_on_the_team(tmp_path, routing, dead_contact=True)
    assert result.returncode == 0, result.stdout
    dead_for = (times["busy"] - times["customer"]).total_seconds()
    assert 1.3 <= dead_for < 3.0  # the dead contact (q 1.0) first, given up when no 180 came within 1.5 s
    assert 0.4 <= (times["answerer"] - times["busy"]).total_seconds() < 1.0  # its 486 (after 0.5 s): the next at once


def test_the_team_contact_registers_with_the_password_and_goes_away_when_not_wanted(tmp_path: Path) -> None:
    registrar = LocalRegistrar("127.0.0.1", free_port(), password="s3cret", team=TeamRouting("1000", "1999", 2000))
    registrar.start()
    try:
        wrong = TeamMembership(
            ContactAccount("127.0.0.1", registrar.port, "1001", "nope", "127.0.0.1", 5999), "1000", 60
        )
        wrong.want(True)
        wrong.start()
        assert not wrong.wait_registered(True, 1.5)
        assert "401" in wrong.last_error and "nope" not in wrong.last_error
        wrong.stop()

        right = TeamMembership(
            ContactAccount("127.0.0.1", registrar.port, "1001", "s3cret", "127.0.0.1", free_port()), "1000", 60
        )
        changes: list[bool] = []
        right.on_change = changes.append
        right.want(True)
        right.start()
        assert right.wait_registered(True, 5), right.last_error
        right.want(False)
        assert right.wait_registered(False, 5), right.last_error
        assert changes == [True, False]
        # nobody on the team and no overflow desk: the registrar says so at once instead of ringing nobody
        scenario = sipp_scenario("uac_expect_busy.xml", tmp_path)
        scenario.write_text(scenario.read_text().replace('response="486"', 'response="480"'))
        result = run_sipp(scenario, remote=f"127.0.0.1:{registrar.port}", service="1000", timeout=10)
        assert result.returncode == 0, result.stdout
        right.stop()
    finally:
        registrar.stop()


def test_registrar_config_prints_a_configuration_kamailio_accepts_and_no_secret(tmp_path: Path, monkeypatch) -> None:
    desk_file = make_desk(tmp_path / "desk")
    monkeypatch.setenv("CONTACTCENTER_SETTINGS", str(desk_file))
    monkeypatch.setenv("CONTACTCENTER_TEAM__NUMBER", "1000")
    monkeypatch.setenv("CONTACTCENTER_TEAM__STRATEGY", "longest_idle")
    monkeypatch.setenv("CONTACTCENTER_SIP_PASSWORD", "top-secret-1")
    monkeypatch.setenv("CONTACTCENTER_REGISTRAR_PASSWORD", "top-secret-2")
    result = CliRunner().invoke(cli, ["registrar", "config", "--listen", "127.0.0.1", "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    config = result.output
    for line in (
        '#!define TEAM_NUMBER "1000"',
        "#!define TEAM_LONGEST_IDLE",
        "#!define WITH_AUTH",
        "#!define TEAM_RING_MS 12500",
    ):
        assert line in config
    assert "top-secret" not in config
    path = tmp_path / "kamailio.cfg"
    path.write_text(config)
    checked = subprocess.run(["kamailio", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr[-2000:]

    bad = CliRunner().invoke(cli, ["registrar", "config", "--listen", "pbx.example.com"])
    assert bad.exit_code == 2 and "is not an IP address" in bad.output and "Traceback" not in bad.output


# ----------------------------------------------------------------------------------------- the store


def seen(arrived_at: datetime, call_id: str = "race@x") -> team_calls.TeamCallSeen:
    return team_calls.TeamCallSeen(call_id, "1000", "13800138000", arrived_at)


def test_of_desks_claiming_one_call_at_once_exactly_one_wins(database) -> None:
    """Eight desks claim at the same instant, most before any arrival was written (each claim adds the row
    if it is missing): exactly one wins, and the row keeps the first arrival time."""
    start = threading.Barrier(8)
    won: list[bool] = []
    errors: list[BaseException] = []

    def desk(n: int) -> None:
        start.wait()
        try:
            with database.session() as session:
                arrived = T0 + timedelta(milliseconds=n)
                won.append(team_calls.claim(session, seen(arrived), f"10{n:02d}", T0 + timedelta(seconds=2)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=desk, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sorted(won) == [False] * 7 + [True]
    with database.session() as session:
        row = team_calls.find(session, "race@x")
        assert row is not None and row.outcome == "answered" and row.arrived_at < T0 + timedelta(seconds=1)
        winner = row.answered_by
        team_calls.release(session, "race@x", "1099")  # not the winner: changes nothing
    with database.session() as session:
        assert team_calls.find(session, "race@x").answered_by == winner
        team_calls.release(session, "race@x", winner)  # the winner could not answer after all
    with database.session() as session:
        row = team_calls.find(session, "race@x")
        assert (row.outcome, row.answered_by, row.answered_at) == (None, "", None)
        # the registrar moved the call to the overflow desk: its take stands whatever was claimed meanwhile
        assert team_calls.claim(session, seen(T0), "1001", T0 + timedelta(seconds=3))
        team_calls.overflow_took(session, seen(T0), "1999", T0 + timedelta(seconds=4))
        team_calls.release(session, "race@x", "1001")  # the agent's late give-back does not undo it
        team_calls.settle_overflow(session, "race@x", None)
    with database.session() as session:
        row = team_calls.find(session, "race@x")
        assert (row.outcome, row.answered_by) == ("overflow_no_callback", "1999")


def test_a_desk_that_stepped_aside_lets_the_other_answering_desk_take_the_call(database) -> None:
    """Two answers crossed and the caller's phone ended the winner's at once: the winner steps aside. The call
    stays answered (never shown as waiting); the other desk that answered can claim it, but not a desk that is
    still about to answer; a desk that is not the answerer cannot step aside for it."""
    with database.session() as session:
        assert team_calls.claim(session, seen(T0), "1001", T0 + timedelta(seconds=2))
        assert not team_calls.claim(session, seen(T0), "1002", T0 + timedelta(seconds=2))
        team_calls.step_aside(session, "race@x", "1002")  # not the answerer: changes nothing
        assert team_calls.answerer(session, "race@x") == "1001"
        team_calls.step_aside(session, "race@x", "1001")
    with database.session() as session:
        row = team_calls.find(session, "race@x")
        assert (row.outcome, row.answered_by) == ("answered", "")
        assert team_calls.outcome_of(row, T0 + timedelta(minutes=5)) == "answered"
        assert team_calls.answerer(session, "race@x") == ""
        # a desk about to answer cannot take it (the caller has an answer); one that answered too can
        assert not team_calls.claim(session, seen(T0), "1003", T0 + timedelta(seconds=3))
        assert team_calls.claim(session, seen(T0), "1002", T0 + timedelta(seconds=2, milliseconds=5), answered=True)
        assert not team_calls.claim(session, seen(T0), "1001", T0 + timedelta(seconds=6), answered=True)
    with database.session() as session:
        assert team_calls.answerer(session, "race@x") == "1002"
        assert team_calls.answerer(session, "nobody@x") is None
        row = team_calls.find(session, "race@x")
        assert row.answered_at == T0 + timedelta(seconds=2, milliseconds=5)  # the time of its answer, kept


@contextmanager
def store_locked(database) -> Iterator[None]:
    """Another connection holds the whole store (SQLite) or the team_calls table (PostgreSQL) until the end."""
    if database.engine.dialect.name == "sqlite":
        connection = sqlite3.connect(make_url(database.url).database, timeout=10)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.rollback()
            connection.close()
        return
    with database.engine.connect() as holder, holder.begin() as transaction:
        holder.exec_driver_sql("LOCK TABLE team_calls IN ACCESS EXCLUSIVE MODE")
        yield
        transaction.rollback()


def test_a_give_back_never_overtakes_the_claim_it_gives_back(database) -> None:
    """A fault: the store is locked when desk 1002 claims a team call, so it answers without knowing; the answer
    then fails (the registrar had CANCELled it: desk 1001's answer came first), and 1002 gives the claim back.
    When the store answers, the give-back must come after the claim, not before it (where it would change
    nothing and leave 1002 holding a call it never answered, and 1001 ending the caller's call as the extra
    one). So the call is free again, and 1001, which answered, takes it."""
    call = SimpleNamespace(sip_call_id="given-back@x", team_number="1000", remote_number="13800138000")
    late, answered = TeamLedger(database, "1002", timeout=0.3), TeamLedger(database, "1001", timeout=5)
    try:
        with database.session() as session:
            team_calls.note_arrival(session, seen(T0, call.sip_call_id))
        with store_locked(database):
            claim = late.claim(call, T0)
            assert claim.won is None  # the store did not say in time: the desk answers
            late.release(call)  # the answer failed
        assert claim.outcome.result(timeout=10) is True  # the claim was written when the store came back...
        late.close()
        with database.session() as session:  # ...and then given back
            row = team_calls.find(session, call.sip_call_id)
            assert (row.outcome, row.answered_by) == (None, "")
        assert answered.claim(call, T0, answered_at=T0 + timedelta(seconds=2)).won is True
    finally:
        late.close()
        answered.close()


def test_every_team_call_has_exactly_one_outcome(database) -> None:
    now = T0 + timedelta(minutes=10)
    rows = {
        "answered": dict(outcome="answered", answered_at=T0 + timedelta(seconds=2)),
        "late": dict(outcome="answered", answered_at=T0 + timedelta(seconds=20)),
        "cb": dict(outcome="overflow_callback"),
        "nocb": dict(outcome="overflow_no_callback"),
        "in overflow": dict(outcome="overflow"),
        "abandoned": dict(ring_ended_at=T0 + timedelta(seconds=3)),
        "just ended": dict(ring_ended_at=now - timedelta(seconds=2), arrived_at=now - timedelta(seconds=5)),
        "ringing": dict(arrived_at=now - timedelta(seconds=4)),
        "lost": dict(),
    }
    with database.session() as session:
        for key, values in rows.items():
            session.add(
                TeamCall(sip_call_id=key, team_number="1000", arrived_at=values.pop("arrived_at", T0), **values)
            )
        session.flush()
        found = {row.sip_call_id: team_calls.outcome_of(row, now) for row in session.query(TeamCall)}
        level = team_calls.service_level(session, T0 - timedelta(hours=1), now + timedelta(hours=1), 15.0, now)
        ringing = [row.sip_call_id for row in team_calls.ringing_now(session, now)]
    assert found == {
        "answered": "answered",
        "late": "answered",
        "cb": "overflow_callback",
        "nocb": "overflow_no_callback",
        "in overflow": "overflow_no_callback",
        "abandoned": "abandoned",
        "just ended": "ringing",
        "ringing": "ringing",
        "lost": "unknown",
    }
    assert sorted(ringing) == ["just ended", "ringing"]
    assert (level.calls, level.ringing, level.ended) == (9, 2, 7)
    assert (level.answered, level.answered_in_time, level.overflow, level.abandoned, level.unknown) == (2, 1, 3, 1, 1)
    assert level.service_level == pytest.approx(1 / 7)
    assert level.longest_wait_s == pytest.approx(5.0)


# ------------------------------------------------------------------------------------ the desk's parts


@pytest.mark.parametrize(
    ("keys", "calling", "expected"),
    [
        ("1", "13800138000", "13800138000"),
        ("1#", "13800138000", "13800138000"),
        ("1", "anonymous", None),  # withheld: nothing to call back
        ("13912345678#", "13800138000", "13912345678"),
        ("13912345678", "13800138000", "13912345678"),
        ("12#", "13800138000", None),
        ("", "13800138000", None),
        ("*#", "13800138000", None),
        ("9" * 21, "13800138000", None),
    ],
)
def test_the_overflow_desk_reads_the_callers_keys(keys: str, calling: str, expected: str | None) -> None:
    assert number_from_keys(keys, calling) == expected


def test_earlier_idle_means_a_higher_q_through_the_local_working_day() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    day = datetime(2026, 11, 30, 0, 0, tzinfo=shanghai)  # 16:00 UTC the day before: UTC midnight is at 08:00 here
    qs = [idle_q(day + timedelta(minutes=m), shanghai) for m in (0, 30, 7 * 60 + 59, 8 * 60 + 1, 18 * 60, 1439)]
    assert qs == sorted(qs, reverse=True) and all(0 < q <= 1 for q in qs) and len(set(qs)) == len(qs)


def test_team_settings_keep_the_three_ring_promise(tmp_path: Path) -> None:
    desk_file = make_desk(tmp_path / "desk")
    settings = load_settings(desk_file, {"CONTACTCENTER_TEAM__NUMBER": "1000"})
    assert settings.team.number == "1000" and settings.team_ring_seconds == pytest.approx(12.5)
    assert load_settings(desk_file, {"CONTACTCENTER_SIP__USER": "1002"}).sip.user == "1002"
    with pytest.raises(SettingsError, match="under three rings"):
        load_settings(desk_file, {"CONTACTCENTER_TEAM__NUMBER": "1000", "CONTACTCENTER_TEAM__RING_SECONDS": "15"})
    with pytest.raises(SettingsError, match="must differ"):
        load_settings(desk_file, {"CONTACTCENTER_TEAM__NUMBER": "1001"})
    with pytest.raises(SettingsError, match="number"):
        load_settings(desk_file, {"CONTACTCENTER_TEAM__NUMBER": '"10;00"'})


@pytest.mark.parametrize(
    ("reason", "elsewhere"),
    [
        ('SIP;cause=200;text="Call completed elsewhere"', True),
        ("SIP ; cause = 200", True),
        ('SIP;text="x";cause=200', True),
        ("Q.850;cause=16, SIP;cause=200", True),
        ("SIP;cause=2000", False),
        ("Q.850;cause=200", False),
        ('SIP;cause=487;text="cause=200"', False),
        ("", False),
        ("garbage;;;", False),
    ],
)
def test_only_the_registrars_answered_elsewhere_cancel_counts_as_such(reason: str, elsewhere: bool) -> None:
    assert cancelled_as_answered_elsewhere(reason) is elsewhere


def test_the_team_header_gives_the_number_and_the_callers_wait() -> None:
    assert team_routing({"X-CC-Team": "1000;arrived=1764489600.123456"}) == (
        "1000",
        datetime(2025, 11, 30, 8, 0, 0, 123456, tzinfo=UTC),
    )
    assert team_routing({"x-cc-team": "1000"}) == ("1000", None)  # no time: the desk counts from its INVITE
    for hostile in ("", "abc", "1000<script>", "1" * 17, ";arrived=1764489600"):
        assert team_routing({"X-CC-Team": hostile}) == ("", None)
    assert team_routing({"X-CC-Team": "1000;arrived=99999999999999999999"}) == ("1000", None)
    assert team_routing({}) == ("", None)
