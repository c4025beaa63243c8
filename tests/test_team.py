"""The team line end to end: desk processes (`contactcenter run`) behind the embedded Kamailio with the team
routing, SIPp customers calling the team number, and one shared store.

Ring period 1 s: agents' desks answer at ring 2 (2 s), the registrar gives agents 2.5 s before it sends the
call to the overflow desk, and three rings are 3 s. Both ready agents answer every ring-all call in the same
instant, so every such call is the "two desks answer at once" race.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from contactcenter.storage.models import AgentStateSpan, Call, Callback, TeamCall
from contactcenter.storage.team_calls import OVERFLOW_GRACE, outcome_of
from tests.helpers.sip import dtmf_pcap, run_sipp, sipp_scenario
from tests.helpers.sound import EARS, MIC, SoundServer
from tests.helpers.team import TEAM, DeskPage, TeamLine, team_line
from tests.helpers.waiting import wait_until

RING_S = 1.0
TEAM_RING_MS = 2500
THREE_RINGS_S = 3 * RING_S


@pytest.fixture
def team(tmp_path: Path) -> Iterator[TeamLine]:
    with team_line(tmp_path, ring_s=RING_S, team_ring_ms=TEAM_RING_MS) as opened:
        yield opened


@pytest.fixture
def team_on_postgresql(tmp_path: Path, postgres_server) -> Iterator[TeamLine]:
    """The team line with its desks sharing PostgreSQL, as desks on several PCs do."""
    with team_line(
        tmp_path, ring_s=RING_S, team_ring_ms=TEAM_RING_MS, database_url=postgres_server.new_database()
    ) as opened:
        yield opened


def test_on_postgresql_two_desks_racing_for_every_call_give_one_answer_each_time(team_on_postgresql: TeamLine) -> None:
    team = team_on_postgresql
    for user in ("1001", "1002"):
        team.start(user)
    pcap = dtmf_pcap(team.tmp, "")
    callers = [f"1380013860{n}" for n in range(3)]
    for caller in callers:
        result = team.call(caller, pcap=pcap, talk_ms=1500)
        assert result.returncode == 0, result.stdout + result.stderr
        assert team.answers_received(caller) == 1
    team.stop_all()
    for caller in callers:
        row = team.team_call(caller)
        assert row.outcome == "answered" and row.answered_by in ("1001", "1002")
        assert [c.disposition for c in team.calls_from(caller)] == ["completed"]


def test_ring_all_picks_one_agent_cancels_the_rest_and_never_rings_a_not_ready_one(team: TeamLine) -> None:
    for user in ("1001", "1002"):
        team.start(user)
    team.start("1003", AGENT__START_READY="false")  # 小休 from the start: no team contact
    team.start("1099", TEAM__ROLE="overflow")
    pcap = dtmf_pcap(team.tmp, "")
    callers = [f"1380013800{n}" for n in range(3)]
    for caller in callers:
        result = team.call(caller, pcap=pcap, talk_ms=1500)
        assert result.returncode == 0, result.stdout + result.stderr  # one 200 OK reached the caller, no second

    outputs = team.stop_all()
    for caller in callers:
        assert team.answers_received(caller) == 1
        row = team.team_call(caller)
        assert row.outcome == "answered" and row.answered_by in ("1001", "1002"), (row.outcome, row.answered_by)
        stored = team.calls_from(caller)
        assert len(stored) == 1, f"{len(stored)} calls stored for one team call"  # the race's loser stored nothing
        assert stored[0].disposition == "completed"
        assert stored[0].rings_before_answer is not None and stored[0].rings_before_answer <= 3
        assert row.answered_at is not None
        assert (row.answered_at - row.arrived_at).total_seconds() <= THREE_RINGS_S

    with team.database.session() as session:  # agents without a headset have their states stored too
        talked = Counter(
            session.scalars(select(AgentStateSpan.agent_extension).where(AgentStateSpan.state == "on_call")).all()
        )
    winners = Counter(team.team_call(caller).answered_by for caller in callers)
    assert talked == winners, (talked, winners)
    for user in ("1001", "1002"):  # both were rung for every call: each one the race, or a CANCEL
        assert outputs[user].count(" ringing ") == len(callers), outputs[user]
    lost = sum(outputs[user].count(" elsewhere ") for user in ("1001", "1002"))
    assert lost == len(callers), "every call's other desk saw it answered elsewhere"
    assert " ringing " not in outputs["1003"] and " refused " not in outputs["1003"]  # never even sent the call
    assert " ringing " not in outputs["1099"]  # agents took them all


def test_all_busy_the_overflow_desk_answers_at_once_and_the_callback_waits_for_the_next_ready_agent(
    team: TeamLine, sound_server: SoundServer
) -> None:
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    agent = team.start("1001", headset=True, AGENT__START_READY="false", CALLBACKS__AUTO_DIAL="false")
    team.start("1002")
    team.start("1099", TEAM__ROLE="overflow")
    busy_pcap = dtmf_pcap(team.tmp, "")
    busy = threading.Thread(  # 1002 is on a call the whole time
        target=lambda: busy_result.append(team.call("13900000000", pcap=busy_pcap, talk_ms=12000, service="1002"))
    )
    busy_result: list[subprocess.CompletedProcess[str]] = []
    busy.start()
    try:
        assert wait_until(lambda: "answered  Customer 13900000000" in team.printed("1002"), 15)
        caller = "13800138111"
        result = team.call(caller, pcap=dtmf_pcap(team.tmp, "1#"), talk_ms=3000)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        busy.join(timeout=60)
    assert busy_result and busy_result[0].returncode == 0

    assert wait_until(lambda: team.team_call(caller).outcome == "overflow_callback", 10)
    row = team.team_call(caller)
    assert row.answered_by == "1099"
    assert row.answered_at is not None and (row.answered_at - row.arrived_at).total_seconds() < RING_S  # one ring
    with team.database.session() as session:
        callback = session.get(Callback, row.callback_id)
        assert callback is not None
        assert (callback.phone, callback.kind, callback.owner_extension) == (caller, "overflow", "")
        assert callback.due_at <= datetime.now(UTC)
    assert wait_until(lambda: [c.disposition for c in team.calls_from(caller)] == ["overflow"], 10)

    page = DeskPage(agent.printed)  # type: ignore[attr-defined]
    try:
        page.ready()
        listed = page.client.get("/api/callbacks").json()
    finally:
        page.close()
    offered = [c for group in listed.values() for c in group if c["id"] == callback.id]
    assert offered and offered[0]["kind"] == "overflow", listed


def test_an_agent_who_does_not_answer_in_time_loses_the_call_to_the_overflow_desk_within_three_rings(
    team: TeamLine,
) -> None:
    team.start("1001", RING__ANSWER_AFTER_RINGS="3")  # would answer at 3 s; the team gives 2.5 s
    team.start("1099", TEAM__ROLE="overflow")
    caller = "13800138222"
    result = team.call(caller, pcap=dtmf_pcap(team.tmp, ""), talk_ms=4500)  # presses nothing
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until(lambda: team.team_call(caller).outcome == "overflow_no_callback", 10)
    row = team.team_call(caller)
    assert row.ring_ended_at is not None  # the agent's desk noted its ringing stopped
    assert row.answered_at is not None and (row.answered_at - row.arrived_at).total_seconds() <= THREE_RINGS_S
    stored = team.calls_from(caller)
    assert [c.disposition for c in stored] == ["overflow"]  # the agent's desk stored nothing of its own
    assert stored[0].rings_before_answer == 3  # counted from when the caller started waiting, not from the hop
    assert " unanswered " in team.stop("1001")


def test_a_caller_who_hangs_up_while_it_rings_is_one_abandoned_call_however_many_desks_rang(
    team: TeamLine,
) -> None:
    for user in ("1001", "1002"):
        team.start(user, RING__ANSWER_AFTER_RINGS="3")
    scenario = sipp_scenario("uac_team_cancel.xml", team.tmp)
    result = run_sipp(scenario, remote=f"127.0.0.1:{team.registrar.port}", service=TEAM, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    with team.database.session() as session:
        assert wait_until(lambda: session.scalar(select(TeamCall.ring_ended_at)) is not None, 10)
        rows = session.scalars(select(TeamCall)).all()
        assert len(rows) == 1 and rows[0].outcome is None
        assert outcome_of(rows[0], rows[0].ring_ended_at + OVERFLOW_GRACE) == "abandoned"
        assert session.scalars(select(Call)).all() == []  # no desk stored a call of its own for it
    for user in ("1001", "1002"):  # both rang, and both saw the caller go (not "answered elsewhere")
        assert wait_until(lambda user=user: " unanswered " in team.printed(user), 10), team.printed(user)
        assert " ringing " in team.printed(user)


def test_two_callers_at_once_are_each_answered_by_a_different_agent(team: TeamLine) -> None:
    """Ring-all rings both free agents for both calls; each agent takes one (atomically), neither call
    overflows, and neither agent answers twice."""
    for user in ("1001", "1002"):
        team.start(user)
    team.start("1099", TEAM__ROLE="overflow")
    pcap = dtmf_pcap(team.tmp, "")
    callers = ["13800138301", "13800138302"]
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    threads = [
        threading.Thread(target=lambda c=c: results.__setitem__(c, team.call(c, pcap=pcap, talk_ms=2500)))
        for c in callers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for caller in callers:
        assert results[caller].returncode == 0, results[caller].stdout
        assert team.answers_received(caller) == 1
    rows = [team.team_call(caller) for caller in callers]
    assert [row.outcome for row in rows] == ["answered", "answered"]
    assert sorted(row.answered_by for row in rows) == ["1001", "1002"]


def test_a_caller_cannot_pose_as_the_team_line(team: TeamLine) -> None:
    """The X-CC-Team header is the registrar's: one a caller sends to an extension is removed on the way, so
    the desk takes it as the direct call it is (no team call row, no claim)."""
    team.start("1001")
    scenario = team.tmp / "spoof.xml"
    source = sipp_scenario(
        "uac_team.xml", team.tmp, saved_as="spoof.xml", pcap=dtmf_pcap(team.tmp, ""), CALLER="13800138400", TALK_MS=500
    )
    text = source.read_text().replace(
        "Max-Forwards: 70\n      Content-Type",
        "Max-Forwards: 70\n      X-CC-Team: 1000;arrived=1000000000\n      Content-Type",
        1,
    )
    assert "X-CC-Team" in text
    scenario.write_text(text)
    result = run_sipp(scenario, remote=f"127.0.0.1:{team.registrar.port}", service="1001", timeout=20)
    assert result.returncode == 0, result.stdout
    assert wait_until(lambda: [c.disposition for c in team.calls_from("13800138400")] == ["completed"], 10)
    with team.database.session() as session:
        assert session.scalars(select(TeamCall)).all() == []


@pytest.mark.parametrize("talk_ms", [6000, 0], ids=["caller-talks", "caller-hangs-up-at-once"])
def test_when_the_store_is_locked_while_both_desks_answer_one_call_results(team: TeamLine, talk_ms: int) -> None:
    """A fault: the shared database is locked when both ring-all desks claim the call, so neither can learn
    in time which one has it, and neither waits for it longer than 0.4 s: both answer. Usually the first 200 OK
    reaches the registrar first and it CANCELs the other desk; when both 200 OKs cross, the caller's phone has
    two answers (SIPp gives up on the second). When the database answers, the claims are decided in whatever
    order. A desk whose claim won but that could not answer gives it back, and the desk that answered takes
    it. A winner whose answer the caller ended at once (the second run: the caller hangs up right after the
    answer, as a phone does with the extra one) steps aside, and the other desk that answered takes the call.
    A desk that answered but lost the claim to one that keeps it ends its answer if still up (BYE) and stores
    nothing. Either way exactly one call results, kept by a desk that answered."""
    import sqlite3

    for user in ("1001", "1002"):
        team.start(user)
    caller = "13800138500"
    locked, answered = threading.Event(), []

    def answered_here() -> list[str]:
        return [u for u in ("1001", "1002") if f"answered  Customer {caller}" in team.printed(u)]

    def hold_the_database() -> None:
        assert wait_until(lambda: all(" ringing " in team.printed(u) for u in ("1001", "1002")), 10)
        connection = sqlite3.connect(team.url.removeprefix("sqlite:///"), timeout=10)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        try:  # until a desk has answered without waiting for the database
            answered.append(wait_until(answered_here, 10))
        finally:
            connection.rollback()
            connection.close()

    holder = threading.Thread(target=hold_the_database)
    holder.start()
    result = team.call(caller, pcap=dtmf_pcap(team.tmp, ""), talk_ms=talk_ms)
    holder.join(timeout=30)
    assert locked.is_set() and answered == [True]
    both = team.answers_received(caller) == 2
    if both:  # the extra answer is ended by its desk; SIPp cannot take a BYE on a second dialog and gives up
        assert wait_until(lambda: any(" duplicate " in team.printed(u) for u in answered_here()), 10)
    else:
        assert team.answers_received(caller) == 1
        # the call lasted until the caller hung up
        assert result.returncode == 0, (result.stdout[-600:], team.printed("1001"), team.printed("1002"))
    outputs = team.stop_all()  # ends the call SIPp walked away from, as the agent would hang up
    row = team.team_call(caller)
    assert row.outcome == "answered" and row.answered_by in answered_here()
    assert [c.disposition for c in team.calls_from(caller)] == ["completed"]  # one call, the extra not stored
    if both:
        (extra,) = [u for u in answered_here() if u != row.answered_by]
        assert " duplicate " in outputs[extra] and " ended " not in outputs[extra]
