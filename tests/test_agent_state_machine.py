"""The agent's state machine (就绪 / 小休 / 振铃 / 通话中 / 话后处理) on its own: what the agent and the calls do
to it, the wrap-up timer (real threads, short timers), and a break asked for during a call."""

from __future__ import annotations

import itertools
import threading

import pytest

from contactcenter.telephony.agent_state import AgentState, AgentStateError, AgentStatus
from tests.helpers.waiting import wait_until

REASONS = ["休息", "培训", "会议"]


def machine(wrap_up_seconds: float = 60.0, start_ready: bool = True) -> tuple[AgentState, list[AgentStatus]]:
    seen: list[AgentStatus] = []
    return AgentState(REASONS, wrap_up_seconds, start_ready=start_ready, on_change=seen.append), seen


def test_a_call_rings_is_answered_and_ends_in_wrap_up_then_ready_when_saved() -> None:
    agent, seen = machine()
    assert agent.status.state == "ready" and agent.accepts_calls
    agent.call_ringing()
    agent.call_answered()
    agent.call_over(answered=True)
    status = agent.status
    assert status.state == "wrap_up" and status.wrap_up_until is not None and not agent.accepts_calls
    agent.wrap_up_done()
    assert agent.status.state == "ready"
    assert [s.state for s in seen] == ["ringing", "on_call", "wrap_up", "ready"]


def test_wrap_up_ends_on_its_own_after_wrap_up_seconds() -> None:
    agent, seen = machine(wrap_up_seconds=0.2)
    agent.call_ringing()
    agent.call_answered()
    agent.call_over(answered=True)
    assert agent.status.state == "wrap_up"
    assert wait_until(lambda: agent.status.state == "ready", 5, step=0.02)
    assert [s.state for s in seen][-2:] == ["wrap_up", "ready"]


def test_a_missed_call_goes_back_to_ready_without_wrap_up() -> None:
    agent, _ = machine()
    agent.call_ringing()
    agent.call_over(answered=False)
    assert agent.status.state == "ready"


def test_not_ready_needs_a_configured_reason_and_refuses_calls() -> None:
    agent, _ = machine()
    with pytest.raises(AgentStateError, match="小休原因"):
        agent.set_not_ready("打游戏")
    assert agent.status.state == "ready"
    agent.set_not_ready("培训")
    assert agent.status.state == "not_ready" and agent.status.reason == "培训" and not agent.accepts_calls
    agent.set_ready()
    assert agent.status.state == "ready" and agent.status.reason == ""


def test_a_break_asked_for_during_a_call_starts_after_its_wrap_up() -> None:
    agent, _ = machine()
    agent.call_ringing()
    agent.call_answered()
    agent.set_not_ready("休息")
    assert agent.status.state == "on_call" and agent.status.after_call == "not_ready:休息"
    agent.call_over(answered=True)
    assert agent.status.state == "wrap_up"
    agent.wrap_up_done()
    assert agent.status.state == "not_ready" and agent.status.reason == "休息"


def test_ready_during_a_call_cancels_the_break_asked_for() -> None:
    agent, _ = machine(wrap_up_seconds=0)
    agent.call_ringing()
    agent.call_answered()
    agent.set_not_ready("会议")
    agent.set_ready()
    agent.call_over(answered=True)
    assert agent.status.state == "ready"  # no wrap-up configured, no break


def test_a_second_call_ending_leaves_the_agent_on_the_first() -> None:
    agent, _ = machine()
    agent.call_ringing()
    agent.call_answered()
    agent.call_ringing()  # a second caller waits for the headset
    agent.call_over(answered=False)  # and gives up
    assert agent.status.state == "on_call"
    agent.call_over(answered=True)
    assert agent.status.state == "wrap_up"


def test_start_not_ready_takes_the_first_reason() -> None:
    agent, _ = machine(start_ready=False)
    assert agent.status.state == "not_ready" and agent.status.reason == "休息" and not agent.accepts_calls


def test_a_failing_listener_does_not_stop_the_state_or_the_others() -> None:
    agent, seen = machine()

    def broken(_: AgentStatus) -> None:
        raise RuntimeError("display gone")

    agent.add_listener(broken)
    later: list[AgentStatus] = []
    agent.add_listener(later.append)
    agent.set_not_ready("休息")
    assert agent.status.state == "not_ready" and seen[-1].state == "not_ready" and later[-1].state == "not_ready"


def test_two_threads_changing_it_at_once_leave_one_consistent_state() -> None:
    agent, seen = machine()
    barrier = threading.Barrier(2)

    def calls() -> None:
        barrier.wait()
        for _ in range(200):
            agent.call_ringing()
            agent.call_over(answered=False)

    def breaks() -> None:
        barrier.wait()
        for n in range(200):
            agent.set_not_ready(REASONS[n % 3])
            agent.set_ready()

    threads = [threading.Thread(target=calls), threading.Thread(target=breaks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert agent.status.state == "ready"
    for before, after in itertools.pairwise(seen):
        assert before != after  # every change reported is a change


def test_a_call_the_agent_places_from_wrap_up_or_a_break_makes_them_busy_then_wrap_up() -> None:
    agent, _ = machine()
    agent.set_not_ready("培训")
    agent.placing_call()
    assert agent.status.state == "ringing" and not agent.status.reason and agent.accepts_calls is True
    agent.call_answered()
    assert agent.status.state == "on_call"
    agent.call_over(answered=True)
    assert agent.status.state == "wrap_up"
