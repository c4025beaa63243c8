"""The desk: each call's lifecycle and the ring policy, for one extension.

Ring policy (R1): answer at ring ``[ring] answer_after_rings`` counted from the INVITE (or at once when the
agent presses "answer now"); answering later than ``apology_after_rings`` rings (agent busy, or policy)
plays the apology greeting instead. A caller who hangs up while it rings is recorded as abandoned. Once
answered, the call's :class:`~contactcenter.telephony.session.CallSession` does the rest (media, speech,
headset, store); calls the desk places (:meth:`Desk.dial`: callbacks, surveys) run through the same session.
Nothing a plugin, the
recogniser or the database does can drop the call: each is isolated by the layer that owns it.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from contactcenter.audio.headset import Headset, HeadsetBridge
from contactcenter.callbacks.book import CallbackBook
from contactcenter.media.call_media import CallMedia
from contactcenter.records import CallRecord, CallSpeechOutcome
from contactcenter.settings import Settings
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rule_book import RuleBook
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.database import Database
from contactcenter.telephony.agent_state import AgentState
from contactcenter.telephony.call import Call, CallNotRinging, DialResult
from contactcenter.telephony.control import CallControl
from contactcenter.telephony.overflow import OverflowAttendant
from contactcenter.telephony.session import CallSession, DeskServices, Publish
from contactcenter.telephony.team import TeamLedger

log = logging.getLogger(__name__)
FINISHED_KEPT = 1000  # recent calls kept in memory for the display; the store has them all


class HeadsetBusy(RuntimeError):
    """The agent asked to place a call while another call has the headset (or there is no headset)."""


class Dialer(Protocol):
    """What places calls for the desk (the softphone)."""

    def dial(self, number: str, timeout: float = 30.0, cancel: threading.Event | None = None) -> DialResult: ...


@dataclass
class DeskCall:
    """What the desk knows about a call: shown on the terminal while it lasts, kept after it ends."""

    call: Call
    control: CallControl
    rings: int = 0
    answered_at: datetime | None = None
    record: CallRecord | None = None
    recording: Path | None = None
    media: CallMedia | None = None
    attended: bool = False  # on the agent's headset (the agent works it from the desktop)
    callback_id: int | None = None  # the callback this call was placed for
    hung_up: bool = False  # the conversation is over (the store may still be catching up)
    claimed: HeadsetBridge | None = None  # the headset a call the agent placed took
    team_call: bool = False  # dialled the team number: its ringing and answer are shared with the other desks

    @property
    def dtmf(self) -> list[str]:
        """The digits the customer pressed during the call."""
        return list(self.media.dtmf) if self.media is not None else []


class Desk:
    """Handles the calls of one extension: the ones it takes and the ones it places."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None,
        publish: Publish | None,
        monitor: SpeechMonitor | None,
        rules: RuleSet | RuleBook | None,
        on_change: Callable[[str, DeskCall], None] | None = None,
        headset: Headset | None = None,
        agent: AgentState | None = None,
    ) -> None:
        self.settings = settings
        self.services = DeskServices(settings, database, publish, monitor, rules, headset)
        team = settings.team
        self.team_number = team.number if team.enabled else None
        self.overflow = team.enabled and team.role == "overflow"
        # The agent's state gates calls only where there is an agent: a desk with a headset, or a desk in a team
        # (its state decides whether the team line rings it).
        team_agent = team.enabled and team.role == "agent"
        self.agent = agent if self.services.headset is not None or team_agent else None
        self.ledger = TeamLedger(database, settings.sip.user) if team.enabled and database is not None else None
        self.attendant = (
            OverflowAttendant(
                self.services.prompts,
                CallbackBook(database, settings) if database is not None else None,
                team.keys_wait_seconds,
            )
            if self.overflow
            else None
        )
        self.on_change = on_change
        self.phone: Dialer | None = None  # the softphone, once registered: calls placed go through it
        self.active: dict[str, DeskCall] = {}
        self.finished: collections.deque[DeskCall] = collections.deque(maxlen=FINISHED_KEPT)
        self._lock = threading.Condition()

    # --------------------------------------------------------------------------------- calls taken

    def handle(self, call: Call) -> None:
        """A call has come in (the softphone's call thread, for as long as the call lasts)."""
        team_call = self.team_number is not None and call.dialled_number == self.team_number
        if team_call and self.ledger is not None:
            self.ledger.arrived(call, self.team_number or "")
        if self.agent is not None and not self.agent.accepts_calls:
            self._refuse(call)
            return
        if team_call and self.agent is not None and self.agent.status.state != "ready":
            self._refuse(call)  # busy since it registered for the team: the registrar rings the others
            return
        desk_call = self._track(call)
        desk_call.team_call = team_call
        desk_call.attended = self.agent is not None
        try:
            self._take(desk_call)
        finally:
            self._untrack(desk_call)

    def _refuse(self, call: Call) -> None:
        """Not ready or in wrap-up: 486 Busy Here, so the PBX's queue or hunt group rings another agent."""
        try:
            call.reject(486, "Busy Here")
        except Exception:
            log.exception("call %s could not be refused", call.sip_call_id)
        status = self.agent.status if self.agent is not None else None
        log.info("call %s from %s refused (agent %s)", call.sip_call_id, call.remote_number, status and status.state)
        self._changed("refused", DeskCall(call, CallControl(call)))

    def _take(self, desk_call: DeskCall) -> None:
        agent = self.agent
        if agent is None:
            self._take_call(desk_call)
            return
        agent.call_ringing()
        try:
            self._take_call(desk_call)
        finally:
            if not desk_call.hung_up:  # abandoned, refused the headset, or failed before the hang-up was seen
                desk_call.hung_up = True
                agent.call_over(answered=desk_call.answered_at is not None)

    def _take_call(self, desk_call: DeskCall) -> None:
        call, ring, services = desk_call.call, self.settings.ring, self.services
        services.emit("call_ringing", call=self._record(call))
        self._changed("ringing", desk_call)
        if isinstance(services.rules, RuleBook):
            services.rules.refresh_soon()  # an admin's changes to the rules, read while it rings
        rings = 0 if self.overflow else ring.answer_after_rings  # the overflow desk answers at once
        answer_at = call.invited_at.timestamp() + rings * ring.ring_period_seconds
        if not self._ring_until(desk_call, answer_at):
            self._abandoned(desk_call)
            return
        claimed = None
        if services.headset is not None and not self.overflow:
            claimed = services.headset.claim(call.ended)  # waits while the agent is on another call
            if claimed is None:
                self._abandoned(desk_call)
                return
        try:
            if desk_call.team_call and not self._won(desk_call):
                return
            self._answer(desk_call, claimed)
        finally:
            if claimed is not None and services.headset is not None:
                services.headset.release(claimed)

    def _ring_until(self, desk_call: DeskCall, answer_at: float) -> bool:
        """Let it ring until the policy's ring or "answer now"; False if the caller hung up meanwhile."""
        call, control = desk_call.call, desk_call.control
        while not call.ended.is_set() and not control.answer_requested.is_set():
            remaining = answer_at - time.time()
            if remaining <= 0:
                break
            control.answer_requested.wait(timeout=min(remaining, 0.05))
        return call.ringing and not call.ended.is_set()

    def _won(self, desk_call: DeskCall) -> bool:
        """A team call this desk is about to answer: claim it, so that of desks answering in the same instant
        exactly one does. The others refuse it (486) and store nothing; the registrar CANCELs them anyway once
        the winner's 200 OK reaches it. When the database cannot say in time, the desk answers."""
        if self.ledger is None:
            return True
        won = self.ledger.claim(desk_call.call, "overflow" if self.overflow else "answered")
        if won is not False or self.overflow:  # the overflow desk never leaves a caller ringing
            return True
        log.info("team call %s was answered at another desk first", desk_call.call.sip_call_id)
        try:
            desk_call.call.reject(486, "Busy Here")
        except Exception:
            log.debug("team call %s already ended", desk_call.call.sip_call_id)
        self._changed("answered_elsewhere", desk_call)
        return False

    def _answer(self, desk_call: DeskCall, claimed: HeadsetBridge | None) -> None:
        call, ring = desk_call.call, self.settings.ring
        try:
            call.answer()
        except CallNotRinging:  # the caller hung up in the same instant
            self._abandoned(desk_call)
            return
        answered = datetime.now(UTC)
        waited_since = self._waiting_since(desk_call)
        desk_call.rings = max(1, math.ceil((answered - waited_since).total_seconds() / ring.ring_period_seconds - 0.05))
        desk_call.answered_at = answered
        if self.agent is not None and claimed is not None:
            self.agent.call_answered()
        record = self._record(call, answered_at=answered, rings_before_answer=desk_call.rings, invited_at=waited_since)
        self.services.emit("call_answered", call=record)
        self._changed("answered", desk_call)
        facts = CallFacts(rings_before_answer=desk_call.rings, apology_after_rings=ring.apology_after_rings)
        late = desk_call.rings > ring.apology_after_rings or self.overflow  # overflow: the caller has waited
        if self.attendant is not None:
            self._run_overflow(desk_call, record, facts)
            return
        self._run_session(desk_call, record, facts, claimed, "late_apology" if late else "greeting")

    def _waiting_since(self, desk_call: DeskCall) -> datetime:
        """When the caller started to wait: the INVITE's arrival here, or, for a team call the overflow desk
        takes, its arrival at the first desk it rang (the rings the caller heard there count)."""
        call = desk_call.call
        if desk_call.team_call and self.overflow and self.ledger is not None:
            first = self.ledger.arrival(call)
            if first is not None and first < call.invited_at:
                return first
        return call.invited_at

    def _run_overflow(self, desk_call: DeskCall, record: CallRecord, facts: CallFacts) -> None:
        """The overflow desk: apology greeting, the callback offer (:mod:`~contactcenter.telephony.overflow`),
        stored as ``overflow``; the team call's row says whether a callback was booked."""
        assert self.attendant is not None
        session = CallSession(
            self.services,
            desk_call.call,
            desk_call.control,
            record,
            facts,
            on_hung_up=lambda: self._hung_up(desk_call),
            disposition="overflow",
        )
        session.start(None, "late_apology")
        callback_id = None
        try:
            callback_id = self.attendant.run(desk_call.call).callback_id
        except Exception:
            log.exception(
                "overflow script of call %s failed; the call goes on until hung up", desk_call.call.sip_call_id
            )
        finally:
            if desk_call.team_call and self.ledger is not None:
                self.ledger.overflow_settled(desk_call.call, callback_id)
        self._finish_session(desk_call, session)

    def _abandoned(self, desk_call: DeskCall) -> None:
        if desk_call.team_call:
            # One row per team call, however many desks it rang: a desk that was not the one to answer
            # stores no call of its own; it notes that its ringing stopped, unless another desk answered.
            if self.ledger is not None and not desk_call.call.answered_elsewhere:
                self.ledger.ring_ended(desk_call.call)
            self._changed("answered_elsewhere" if desk_call.call.answered_elsewhere else "ring_ended", desk_call)
            return
        record = self._record(
            desk_call.call, ended_at=datetime.now(UTC), hung_up_first="customer", disposition="abandoned"
        )
        desk_call.record = self.services.store(record, CallSpeechOutcome.empty())
        self._changed("abandoned", desk_call)

    # -------------------------------------------------------------------------------- calls placed

    def dial(
        self,
        number: str,
        timeout: float = 30.0,
        *,
        attended: bool = False,
        callback_id: int | None = None,
        cancel: threading.Event | None = None,
    ) -> DialResult:
        """Place a call (a callback, a survey): ring ``number`` at most ``timeout`` s. Once it is answered it
        runs like a call taken (recorded, transcribed, checked against the rules for calls placed, stored,
        ``call_ended`` published). Unattended (the default) the caller of this method drives it: prompts,
        keys, hang-up; it never waits for the headset. ``attended``: the agent placed it from the desktop, so
        it goes on the agent's headset (:class:`HeadsetBusy` at once if another call has it) and the agent's
        state follows it; ``callback_id`` is the callback it is for (the wrap-up closes it). Setting ``cancel``
        while it rings stops it (outcome ``cancelled``)."""
        if self.phone is None:
            raise RuntimeError("the desk has no phone yet")
        claimed: HeadsetBridge | None = None
        headset, agent = self.services.headset, self.agent
        if attended:
            claimed = headset.try_claim() if headset is not None else None
            if claimed is None or headset is None:
                raise HeadsetBusy("耳机正在通话中" if headset is not None else "本机没有耳机")
            if agent is not None:
                agent.placing_call()
        try:
            result = self.phone.dial(number, timeout=timeout, cancel=cancel)
        except BaseException:
            self._placed_over(claimed, answered=False)
            raise
        if result.call is None:
            self._placed_over(claimed, answered=False)
            return result
        desk_call = self._track(result.call)
        desk_call.attended, desk_call.callback_id, desk_call.claimed = attended, callback_id, claimed
        try:
            answered = datetime.now(UTC)
            desk_call.answered_at = answered
            if claimed is not None and agent is not None:
                agent.call_answered()
            record = self._record(result.call, answered_at=answered)
            self.services.emit("call_answered", call=record)
            self._changed("answered", desk_call)
            session = CallSession(
                self.services,
                desk_call.call,
                desk_call.control,
                record,
                CallFacts(direction="outbound"),
                on_hung_up=lambda: self._hung_up(desk_call),
            )
            session.start(claimed, None)  # media attached before the caller plays anything
        except BaseException:
            result.call.hangup()
            desk_call.hung_up = True
            self._placed_over(claimed, answered=False)
            self._untrack(desk_call)
            raise
        threading.Thread(
            target=self._finish_placed, args=(desk_call, session), daemon=True, name=f"placed {result.call.sip_call_id}"
        ).start()
        return result

    def _finish_placed(self, desk_call: DeskCall, session: CallSession) -> None:
        try:
            self._finish_session(desk_call, session)
        except Exception:
            log.exception("placed call %s could not be finished", desk_call.call.sip_call_id)
        finally:
            self._hung_up(desk_call)  # if finishing failed before the hang-up was seen
            self._untrack(desk_call)

    def _placed_over(self, claimed: HeadsetBridge | None, answered: bool) -> None:
        """A call the agent placed is over (or never connected): free the headset, move the agent on."""
        if claimed is not None and self.services.headset is not None:
            self.services.headset.release(claimed)
        if claimed is not None and self.agent is not None:
            self.agent.call_over(answered=answered)

    # ------------------------------------------------------------------------------------ common

    def _run_session(
        self,
        desk_call: DeskCall,
        record: CallRecord,
        facts: CallFacts,
        claimed: HeadsetBridge | None,
        opening: str | None,
    ) -> None:
        session = CallSession(
            self.services, desk_call.call, desk_call.control, record, facts, on_hung_up=lambda: self._hung_up(desk_call)
        )
        session.start(claimed, opening)
        self._finish_session(desk_call, session)

    def _finish_session(self, desk_call: DeskCall, session: CallSession) -> None:
        desk_call.media = session.media
        try:
            desk_call.record = session.finish()
        finally:
            desk_call.recording = session.recording
        self._changed("ended", desk_call)

    def _hung_up(self, desk_call: DeskCall) -> None:
        """The conversation is over (once per call): the agent's wrap-up starts now, not when the store has
        caught up with recognition."""
        if desk_call.hung_up:
            return
        desk_call.hung_up = True
        self._changed("hung_up", desk_call)
        if desk_call.claimed is not None:  # a call the agent placed: its headset goes back now
            self._placed_over(desk_call.claimed, answered=True)
        elif desk_call.attended and self.agent is not None:
            self.agent.call_over(answered=True)

    def _track(self, call: Call) -> DeskCall:
        desk_call = DeskCall(call, CallControl(call))
        desk_call.control.on_change = lambda what: self._changed(what, desk_call)
        with self._lock:
            self.active[call.sip_call_id] = desk_call
        return desk_call

    def _untrack(self, desk_call: DeskCall) -> None:
        with self._lock:
            self.active.pop(desk_call.call.sip_call_id, None)
            self.finished.append(desk_call)
            self._lock.notify_all()

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no call is in progress (shutdown, tests); False if calls remain after ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: not self.active, timeout)

    def _record(self, call: Call, **changes: object) -> CallRecord:
        values: dict[str, object] = dict(
            sip_call_id=call.sip_call_id,
            direction=call.direction,
            remote_number=call.remote_number,
            caller_name=call.caller_name,
            agent_extension=self.settings.sip.user,
            invited_at=call.invited_at,
            ringing_at=call.invited_at,
        )
        values.update(changes)
        return CallRecord.model_validate(values)

    def _changed(self, what: str, desk_call: DeskCall) -> None:
        if self.on_change is not None:
            try:
                self.on_change(what, desk_call)
            except Exception:
                log.exception("display of call %s failed", desk_call.call.sip_call_id)

    # ------------------------------------------------------------------------- the agent's controls

    def active_calls(self) -> list[DeskCall]:
        """The calls in progress (ringing or answered), oldest first."""
        with self._lock:
            return list(self.active.values())

    def headset_call(self) -> DeskCall | None:
        """The call on the agent's headset, if any."""
        with self._lock:
            return next((c for c in self.active.values() if c.control.on_headset), None)

    def current_control(self) -> CallControl | None:
        """The controls the agent's keys act on: the headset call, else the only call in progress."""
        with self._lock:
            on_headset = [c for c in self.active.values() if c.control.on_headset]
            calls = on_headset or list(self.active.values())
            return calls[0].control if len(calls) == 1 else None
