"""The talk-activity listener in a process of its own (speech/listener_process.py): the same timeline as in
the desk's process, the leg's end waited for, and a killed listener neither hangs the call nor the next."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from contactcenter.speech import listener_process
from contactcenter.speech.listener_process import TalkListener
from contactcenter.speech.talk_activity import ActivitySettings
from tests.helpers.two_legs import RATE, TwoLegs, judged_live
from tests.helpers.waiting import wait_until

TURN_FRAMES = 10  # the monitor's feeders hand the listener 200 ms at a time


def interruption_call() -> TwoLegs:
    call = TwoLegs(40, seed=7)
    call.place_speech("customer", "r09", 5.0).place_speech("agent", "r01", 7.0)
    call.place_speech("customer", "r13", 25.0).place_speech("agent", "r15", 29.0)
    return call.with_echo()


def feed(activity, call: TwoLegs, until_frame: int | None = None) -> None:
    """Both legs a turn at a time, as the speech monitor's feeders do."""
    frames: dict[str, list[bytes]] = {"agent": [], "customer": []}
    for leg, frame in call.frames():
        frames[leg].append(frame)
    count = len(frames["agent"]) if until_frame is None else until_frame
    for start in range(0, count, TURN_FRAMES):
        for leg in ("agent", "customer"):
            activity.add_audio(leg, b"".join(frames[leg][start : min(start + TURN_FRAMES, count)]))


@pytest.fixture
def listener():
    found = TalkListener(nice=0)
    yield found
    found.close()


def test_the_listener_process_gives_the_timeline_the_desk_would(listener: TalkListener) -> None:
    call = interruption_call()
    settled: list[float] = []
    remote = listener.activity(RATE, ("agent", "customer"), ActivitySettings(), settled.append)
    feed(remote, call)
    remote.finish_leg("agent")
    remote.finish_leg("customer")
    local = judged_live(call)
    assert remote.spans("agent") == local.spans("agent") and remote.spans("agent")
    assert remote.spans("customer") == local.spans("customer")
    assert remote.echo_frames == local.echo_frames > 50
    assert settled == sorted(settled) and settled[-1] == pytest.approx(40.0, abs=0.05)  # told as it settles
    assert remote.settled_s == pytest.approx(40.0, abs=0.05)


def test_a_killed_listener_leaves_the_call_its_timeline_so_far_and_the_next_call_a_new_one(
    listener: TalkListener, caplog: pytest.LogCaptureFixture
) -> None:
    call = interruption_call()
    remote = listener.activity(RATE, ("agent", "customer"), ActivitySettings())
    feed(remote, call, until_frame=20 * 50)  # 20 s
    assert wait_until(lambda: remote.settled_s > 15, 10)
    heard_so_far = remote.spans("customer")
    pid = listener.pid
    assert pid is not None and pid != os.getpid()
    with caplog.at_level(logging.ERROR):
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: remote.lost, 10)
        remote.finish_leg("agent")  # returns at once: nobody is left to settle it
        remote.finish_leg("customer")
    assert remote.spans("customer")[: len(heard_so_far) - 1] == heard_so_far[:-1]
    assert "the talk listener process died" in caplog.text and "Traceback" not in caplog.text
    following = listener.activity(RATE, ("agent", "customer"), ActivitySettings())
    feed(following, call)
    following.finish_leg("agent")
    following.finish_leg("customer")
    assert following.spans("customer") == judged_live(call).spans("customer")
    assert listener.restarts == 1 and listener.pid not in (None, pid)


def test_closing_stops_and_reaps_the_listener_process() -> None:
    listener = TalkListener(nice=0)
    pid = listener.pid
    assert pid is not None and os.path.exists(f"/proc/{pid}")
    listener.close()
    assert not os.path.exists(f"/proc/{pid}")  # gone, not a zombie: the desk waited for it
    with pytest.raises(RuntimeError, match="closed"):
        listener.activity(RATE, ("agent", "customer"), ActivitySettings())


def test_a_stalled_listener_gets_gaps_not_an_endless_queue(
    listener: TalkListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener stopped (SIGSTOP) while 40 s of a call arrive: beyond the backlog limit the audio goes as
    time without speech, so memory stays bounded and the timeline keeps its length."""
    monkeypatch.setattr(listener_process, "MAX_BACKLOG_BYTES", 200_000)  # 12.5 s of one leg
    call = interruption_call()
    remote = listener.activity(RATE, ("agent", "customer"), ActivitySettings())
    pid = listener.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        feed(remote, call)
        process = remote.process
        assert process.waiting_bytes <= 200_000
    finally:
        os.kill(pid, signal.SIGCONT)
    remote.finish_leg("agent")
    remote.finish_leg("customer")
    assert remote.settled_s == pytest.approx(40.0, abs=0.05)  # all of the call's time
    local = judged_live(call)
    talked = sum(span.length for span in remote.spans("customer"))
    assert 0 < talked < sum(span.length for span in local.spans("customer"))  # what was not heard is not talk
