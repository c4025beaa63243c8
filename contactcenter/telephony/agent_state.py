"""The agent's state (坐席状态): 就绪 ready, 小休 not ready (with a reason), 振铃 ringing, 通话中 on call,
话后处理 wrap-up.

It decides whether the desk takes a new call: only a *ready* agent gets one; while not ready or in wrap-up
the desk answers 486 Busy Here, so a PBX queue or hunt group rings another agent. The agent changes it from
the desktop (ready / not ready); the desk's calls change it (ringing, answered, hung up); wrap-up ends when the
agent saves it, asks to be ready, or after ``[agent] wrap_up_seconds``. A "not ready" asked for during a call
is kept and applied when the call and its wrap-up are over, as agents expect of a "小休 after this call".

Every change is handed to ``on_change`` (the desktop stores it and shows it); listeners run on the thread that
made the change and must not block it: the store writes from its own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

log = logging.getLogger(__name__)

State = Literal["ready", "not_ready", "ringing", "on_call", "wrap_up", "offline"]


@dataclass(frozen=True)
class AgentStatus:
    """The state at one moment, as shown and stored."""

    state: State
    reason: str  # the not-ready reason ("" otherwise)
    since: datetime
    wrap_up_until: datetime | None = None  # when wrap-up ends on its own
    after_call: str | None = None  # "not_ready:<reason>" asked during a call, or None


class AgentStateError(ValueError):
    """A change the agent cannot make now (a one-line reason in Chinese, for the page)."""


class AgentState:
    """One agent's state, changed by the agent and by the desk's calls; thread-safe."""

    def __init__(
        self,
        reasons: list[str],
        wrap_up_seconds: float,
        *,
        start_ready: bool = True,
        on_change: Callable[[AgentStatus], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reasons = list(reasons)
        self.wrap_up_seconds = wrap_up_seconds
        self._clock = clock
        self._listeners: list[Callable[[AgentStatus], None]] = [on_change] if on_change else []
        self._lock = threading.RLock()
        self._calls = 0  # attended calls ringing or in progress
        self._answering = False  # a team call taken (take_team_call) and not yet answered or given back
        self._answer_settled = threading.Condition(self._lock)
        self._after_call: str | None = None
        self._timer: threading.Timer | None = None
        self._status = AgentStatus("ready" if start_ready else "not_ready", "" if start_ready else reasons[0], clock())

    # ------------------------------------------------------------------------------------------- reading

    @property
    def status(self) -> AgentStatus:
        with self._lock:
            return self._status

    @property
    def accepts_calls(self) -> bool:
        """A new call may ring this agent: ready (a second call while on one waits for the headset as before)."""
        with self._lock:
            return self._status.state in ("ready", "ringing", "on_call")

    def add_listener(self, listener: Callable[[AgentStatus], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    # ---------------------------------------------------------------------------------------- the agent

    def set_ready(self) -> AgentStatus:
        """就绪: from not ready or wrap-up (ends it now). During a call: cancels a "not ready after the call"."""
        with self._lock:
            if self._status.state in ("ringing", "on_call"):
                self._after_call = None
                return self._set(self._status.state, self._status.reason)
            return self._set("ready", "")

    def set_not_ready(self, reason: str) -> AgentStatus:
        """小休 with one of the configured reasons; during a call it applies once the call's wrap-up is over."""
        if reason not in self.reasons:
            raise AgentStateError(f"小休原因须为: {' / '.join(self.reasons)}")
        with self._lock:
            if self._status.state in ("ringing", "on_call"):
                self._after_call = f"not_ready:{reason}"
                return self._set(self._status.state, self._status.reason)
            return self._set("not_ready", reason)

    def wrap_up_done(self) -> AgentStatus:
        """The wrap-up is saved: the agent is ready again (or takes the break asked for during the call)."""
        with self._lock:
            if self._status.state != "wrap_up":
                return self._status
            return self._after_wrap_up()

    def go_offline(self) -> AgentStatus:
        """The desk stops."""
        with self._lock:
            return self._set("offline", "")

    # ------------------------------------------------------------------------------------------ the calls

    def call_ringing(self) -> None:
        with self._lock:
            self._calls += 1
            if self._status.state == "ready":
                self._set("ringing", "")

    def placing_call(self) -> None:
        """The agent dials (a callback) from any state but a call: they are working from now on, so an incoming
        call does not ring them meanwhile, and the call ends in wrap-up like any other."""
        with self._lock:
            self._calls += 1
            if self._status.state in ("ready", "not_ready", "wrap_up"):
                self._after_call = None
                self._set("ringing", "")

    def take_team_call(self, wait: float = 2.0) -> bool:
        """The agent takes one team call now, atomically: of two team calls ringing one agent, only one is
        answered. While another is being taken (its claim not settled yet), wait up to ``wait`` s for it: if
        another desk had that one, this one is theirs to take. False when the agent is on a call by then, or
        no longer free."""
        with self._lock:
            self._answer_settled.wait_for(lambda: not self._answering, timeout=wait)
            if self._answering or self._status.state not in ("ready", "ringing"):
                return False
            self._answering = True
            return True

    def release_team_call(self) -> None:
        """The team call taken was not answered here after all (another desk had it, or it stopped ringing)."""
        with self._lock:
            self._answering = False
            self._answer_settled.notify_all()

    def call_answered(self) -> None:
        with self._lock:
            self._answering = False
            self._answer_settled.notify_all()
            if self._status.state in ("ready", "ringing"):
                self._set("on_call", "")

    def call_over(self, answered: bool) -> None:
        """A call that rang this agent is over: after a conversation comes wrap-up; a missed call goes back."""
        with self._lock:
            self._calls = max(0, self._calls - 1)
            if self._calls or self._status.state not in ("ringing", "on_call"):
                return
            if answered and self.wrap_up_seconds > 0:
                self._set("wrap_up", "", wrap_up_until=self._clock() + timedelta(seconds=self.wrap_up_seconds))
            elif answered:
                self._after_wrap_up()
            else:
                self._set("ready", "")

    # ------------------------------------------------------------------------------------------ internals

    def _after_wrap_up(self) -> AgentStatus:
        after, self._after_call = self._after_call, None
        if after is not None and after.startswith("not_ready:"):
            return self._set("not_ready", after.split(":", 1)[1])
        return self._set("ready", "")

    def _expire(self, until: datetime) -> None:
        with self._lock:
            if self._status.state == "wrap_up" and self._status.wrap_up_until == until:
                self._after_wrap_up()

    def _set(self, state: State, reason: str, wrap_up_until: datetime | None = None) -> AgentStatus:
        previous = self._status
        if self._timer is not None and state != "wrap_up":
            self._timer.cancel()
            self._timer = None
        same = previous.state == state and previous.reason == reason and previous.wrap_up_until == wrap_up_until
        since = previous.since if same else self._clock()
        self._status = AgentStatus(state, reason, since, wrap_up_until, self._after_call)
        if wrap_up_until is not None:
            delay = max(0.0, (wrap_up_until - self._clock()).total_seconds())
            self._timer = threading.Timer(delay, self._expire, args=(wrap_up_until,))
            self._timer.daemon = True
            self._timer.start()
        if self._status != previous:
            for listener in list(self._listeners):
                try:
                    listener(self._status)
                except Exception:
                    log.exception("agent state listener failed")
        return self._status
