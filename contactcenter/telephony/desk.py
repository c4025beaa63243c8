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
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from contactcenter.audio.headset import Headset, HeadsetBridge
from contactcenter.callbacks.book import CallbackBook
from contactcenter.media.call_media import CallMedia
from contactcenter.records import NOT_ANSWERED, CallRecord, CallSpeechOutcome
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
CLOCK_TRUST = timedelta(seconds=60)  # the team registrar's clock is used for ring counts within this of ours
LATE_CLAIM_WAIT_SECONDS = 30.0  # a claim the store confirms after the answer is still acted on this long
GIVE_BACK_WAIT_SECONDS = 3.0  # a desk that claimed a call it could not answer gives the claim back within this
EXTRA_ANSWER_SECONDS = 1.5  # a won team call the caller ends this soon after the answer may have been an extra one


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
    duplicate: bool = False  # another desk answered the same team call first: ended, and not stored
    claim_won: bool = False  # this desk's claim of the team call won (before or after its answer)
    stepped_aside: bool = False  # the caller's phone ended the answer at once: another answer may be the one kept
    deciding: int = 0  # threads still deciding whether this desk keeps the call (the store waits for them)
    answer_tried: threading.Event = field(default_factory=threading.Event)  # answered, or could not be

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
        # a claim may delay the answer by at most this: well inside the half ring between the desks' answer and
        # the registrar giving the call to the overflow desk
        claim_wait = min(1.0, 0.4 * settings.ring.ring_period_seconds)
        self.ledger = (
            TeamLedger(database, settings.sip.user, timeout=claim_wait)
            if team.enabled and database is not None
            else None
        )
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
        team_call = self.team_number is not None and call.team_number == self.team_number
        if team_call and self.ledger is not None:
            self.ledger.arrived(call, self.waiting_since(call))
        if self.agent is not None and not self.agent.accepts_calls:
            self._refuse(call)
            return
        if team_call and self.agent is not None and self.agent.status.state not in ("ready", "ringing"):
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
        # a team call's rings count from when the caller started waiting (the registrar says when), so a desk
        # rung later in a hunt answers at the same ring the first one would have
        answer_at = self.waiting_since(call).timestamp() + rings * ring.ring_period_seconds
        if not self._ring_until(desk_call, answer_at):
            self._abandoned(desk_call)
            return
        if desk_call.team_call and self._taken_elsewhere():  # do not wait for the headset: others can answer
            self._give_up_team_call(desk_call, "refused")
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
        """Let it ring until the policy's ring or "answer now"; False if the caller hung up meanwhile. A team
        call stops ringing here as soon as the agent takes another call (the next check refuses it)."""
        call, control = desk_call.call, desk_call.control
        while not call.ended.is_set() and not control.answer_requested.is_set():
            if desk_call.team_call and self._taken_elsewhere():
                break
            remaining = answer_at - time.time()
            if remaining <= 0:
                break
            control.answer_requested.wait(timeout=min(remaining, 0.05))
        return call.ringing and not call.ended.is_set()

    def _taken_elsewhere(self) -> bool:
        """The agent took another call since this team call started ringing them (or went on a break): this
        one is for the other agents, or the overflow desk."""
        agent = self.agent
        return agent is not None and not self.overflow and agent.status.state not in ("ready", "ringing")

    def _won(self, desk_call: DeskCall) -> bool:
        """A team call this desk is about to answer. The agent takes it (atomically: of two team calls ringing
        one agent, only one is answered), then the desk claims it in the store, so that of desks answering in
        the same instant exactly one does. The others refuse it (486) and store nothing; the registrar CANCELs
        them anyway once the winner's 200 OK reaches it. When the store does not say in time, the desk answers
        and :meth:`_watch_late_claim` ends it if the store later says another desk had it. The overflow desk
        records its take without waiting: the registrar has already decided it is the overflow desk's."""
        call = desk_call.call
        if self.overflow:
            if self.ledger is not None:
                self.ledger.overflow_took(call, self.waiting_since(call))
            return True
        agent = self.agent
        if agent is not None and not agent.take_team_call():
            self._give_up_team_call(desk_call, "refused")
            return False
        if self.ledger is None:
            return True
        claim = self.ledger.claim(call, self.waiting_since(call))
        if claim.won is False:
            if agent is not None:
                agent.release_team_call()
            log.info("team call %s was answered at another desk first", call.sip_call_id)
            self._give_up_team_call(desk_call, "answered_elsewhere")
            return False
        desk_call.claim_won = claim.won is True
        if claim.won is None:
            self._deciding(desk_call, self._watch_late_claim, desk_call, claim.outcome)
        return True

    def _deciding(self, desk_call: DeskCall, work: Callable[..., None], *args: object) -> None:
        """Run ``work`` on its own thread; the call is not stored (or dropped as a duplicate) before it is done."""
        with self._lock:
            desk_call.deciding += 1

        def run() -> None:
            try:
                work(*args)
            except Exception:
                log.exception("team call %s: deciding which desk has it failed", desk_call.call.sip_call_id)
            finally:
                with self._lock:
                    desk_call.deciding -= 1
                    self._lock.notify_all()

        threading.Thread(target=run, daemon=True, name="team claim").start()

    def _kept(self, desk_call: DeskCall) -> bool:
        """Whether the ended call is stored: not if it was the extra answer of a team call, once that is known."""
        with self._lock:
            self._lock.wait_for(
                lambda: desk_call.deciding == 0, LATE_CLAIM_WAIT_SECONDS + GIVE_BACK_WAIT_SECONDS + EXTRA_ANSWER_SECONDS
            )
        return not desk_call.duplicate

    def _watch_late_claim(self, desk_call: DeskCall, outcome: Future[bool]) -> None:
        """The store confirmed the claim only after the desk had answered. If another desk's claim won, that
        desk may not have answered at all (the registrar CANCELled it when this desk's 200 OK came first): it
        gives its claim back, and this desk takes it again. If the claim stays with the other desk, both
        answered and the caller's phone got two 200 OKs. The phone keeps one and ends the other (RFC 3261
        13.2.2.4); if it ended the other desk's, that desk steps aside (:meth:`_step_aside`) and this one takes
        the call. Otherwise this desk's call is the extra one: ended (BYE) if it is still up, and not stored."""
        call, ledger = desk_call.call, self.ledger
        try:
            won = outcome.result(timeout=LATE_CLAIM_WAIT_SECONDS)
        except Exception:
            return  # still unknown: the call stays, as answered
        desk_call.answer_tried.wait(LATE_CLAIM_WAIT_SECONDS)
        if ledger is None or desk_call.answered_at is None:
            return  # not answered after all: a claim it won is given back (:meth:`_claim_undone`)
        deadline = time.monotonic() + GIVE_BACK_WAIT_SECONDS
        while not won and time.monotonic() < deadline:
            if ledger.claim(call, self.waiting_since(call), desk_call.answered_at).won:
                log.info("team call %s: the desk that had claimed it let it go; this desk has it", call.sip_call_id)
                won = True
            else:
                time.sleep(0.2)
        if not won:
            log.warning("team call %s was also answered at another desk; this desk's answer is ended", call.sip_call_id)
            desk_call.duplicate = True
            if not call.ended.is_set():
                try:
                    call.hangup()
                except Exception:
                    log.debug("team call %s already over", call.sip_call_id)
            return
        with self._lock:
            desk_call.claim_won = True
            step_aside = call.ended.is_set() and self._ended_at_once(desk_call)
        if step_aside:
            self._step_aside(desk_call)

    def _ended_at_once(self, desk_call: DeskCall) -> bool:
        """Under the desk's lock, once: a won team call the caller's phone ended right after the answer, which
        is what a phone does to the extra one of two answers."""
        call, answered = desk_call.call, desk_call.answered_at
        at_once = (
            self.ledger is not None
            and not desk_call.stepped_aside
            and call.hung_up_by == "customer"
            and answered is not None
            and (datetime.now(UTC) - answered).total_seconds() < EXTRA_ANSWER_SECONDS
        )
        desk_call.stepped_aside = desk_call.stepped_aside or at_once
        return at_once

    def _step_aside(self, desk_call: DeskCall) -> None:
        """This desk won the team call, but the caller's phone ended the answer at once. It may have kept
        another desk's answer that crossed this one: the desk steps aside in the store and waits a little for
        that desk to take the call, which makes this answer the extra one (not stored). If none does, it was
        just a short call, and the desk claims it back."""
        call, ledger = desk_call.call, self.ledger
        assert ledger is not None
        ledger.step_aside(call)
        deadline = time.monotonic() + GIVE_BACK_WAIT_SECONDS + 1.0
        while time.monotonic() < deadline:
            answerer = ledger.answerer(call)
            if answerer and answerer != ledger.extension:
                log.info("team call %s: the caller kept the answer of desk %s", call.sip_call_id, answerer)
                desk_call.duplicate = True
                return
            time.sleep(0.2)
        if ledger.claim(call, self.waiting_since(call), desk_call.answered_at).won is False:
            desk_call.duplicate = True

    def _give_up_team_call(self, desk_call: DeskCall, what: str) -> None:
        try:
            desk_call.call.reject(486, "Busy Here")
        except Exception:
            log.debug("team call %s already ended", desk_call.call.sip_call_id)
        self._changed(what, desk_call)

    def _answer(self, desk_call: DeskCall, claimed: HeadsetBridge | None) -> None:
        call, ring = desk_call.call, self.settings.ring
        answered = datetime.now(UTC)  # the ring it is answered at: when the desk answers, not once pyVoIP has
        try:  # set up the media (tens of ms on a busy machine, which could tip the count into the next ring)
            call.answer()
            desk_call.answered_at = answered
        except CallNotRinging:  # the caller hung up in the same instant (or the registrar moved the call on)
            if desk_call.team_call:
                self._claim_undone(desk_call)
            self._abandoned(desk_call)
            return
        finally:
            desk_call.answer_tried.set()
        waited_since = self.waiting_since(call)
        desk_call.rings = max(1, math.ceil((answered - waited_since).total_seconds() / ring.ring_period_seconds - 0.05))
        if self.agent is not None:  # on the headset, or a team desk's agent without one
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

    def waiting_since(self, call: Call) -> datetime:
        """When the caller started to wait: for a team call, when it reached the team registrar (the header
        it adds), so the rings heard at desks rung earlier count; otherwise the INVITE's arrival here. A
        registrar time that disagrees with this desk's clock by more than :data:`CLOCK_TRUST` is not used."""
        arrived = call.team_arrived_at if call.team_number and call.team_number == self.team_number else None
        if arrived is None:
            return call.invited_at
        if not call.invited_at - CLOCK_TRUST <= arrived <= call.invited_at + timedelta(seconds=1):
            log.warning(
                "team call %s: the registrar's clock and this desk's differ (%+.1f s); rings counted from here",
                call.sip_call_id,
                (arrived - call.invited_at).total_seconds(),
            )
            return call.invited_at
        return min(arrived, call.invited_at)

    def _claim_undone(self, desk_call: DeskCall) -> None:
        """The desk claimed the team call but could not answer it: the claim is given back."""
        if self.agent is not None and not self.overflow:
            self.agent.release_team_call()
        if self.ledger is not None and not self.overflow:
            self.ledger.release(desk_call.call)

    def _run_overflow(self, desk_call: DeskCall, record: CallRecord, facts: CallFacts) -> None:
        """The overflow desk: apology greeting, the callback offer (:mod:`~contactcenter.telephony.overflow`),
        stored as ``overflow``; the team call's row says whether a callback was booked."""
        assert self.attendant is not None
        session = self._session(desk_call, record, facts, disposition="overflow")
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
        desk_call.record = self.services.store(record, CallSpeechOutcome.not_checked(NOT_ANSWERED))
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

    def _session(self, desk_call: DeskCall, record: CallRecord, facts: CallFacts, **options: str) -> CallSession:
        """The session of an answered call taken: the agent's wrap-up starts at its hang-up, and it is not
        stored if it turns out to be the extra answer of a team call (``duplicate``)."""
        return CallSession(
            self.services,
            desk_call.call,
            desk_call.control,
            record,
            facts,
            on_hung_up=lambda: self._hung_up(desk_call),
            keep=lambda: self._kept(desk_call),
            **options,
        )

    def _run_session(
        self,
        desk_call: DeskCall,
        record: CallRecord,
        facts: CallFacts,
        claimed: HeadsetBridge | None,
        opening: str | None,
    ) -> None:
        session = self._session(desk_call, record, facts)
        session.start(claimed, opening)
        self._finish_session(desk_call, session)

    def _finish_session(self, desk_call: DeskCall, session: CallSession) -> None:
        desk_call.media = session.media
        try:
            desk_call.record = session.finish()
        finally:
            desk_call.recording = session.recording
        self._changed("duplicate" if desk_call.duplicate else "ended", desk_call)

    def _hung_up(self, desk_call: DeskCall) -> None:
        """The conversation is over (once per call): the agent's wrap-up starts now, not when the store has
        caught up with recognition."""
        if desk_call.hung_up:
            return
        desk_call.hung_up = True
        if desk_call.team_call and not self.overflow:
            with self._lock:
                step_aside = desk_call.claim_won and self._ended_at_once(desk_call)
            if step_aside:
                self._deciding(desk_call, self._step_aside, desk_call)
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

    def close(self) -> None:
        """The desk stops (after its calls): what is queued for the team call records is written."""
        if self.ledger is not None:
            self.ledger.close()

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
            # the overflow desk answers as the overflow number (the wallboard does not list it as an agent)
            agent_extension=self.settings.team.overflow_number if self.overflow else self.settings.sip.user,
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
