"""What the agent's page shows, kept up to date from the desk as it happens.

The desk tells the hub about each call (ringing, answered, held, hung up, stored), the speech side about
each utterance and finding (the same ``utterance`` / ``rule_hit`` events plugins get, handed over before the
plugin queues), and the agent's state about each change. The hub keeps one view per call and pushes a fresh
snapshot to every open page (server-sent events) on each change. The telephony and speech threads only
update the view and wake the hub's own notifier thread, which builds the snapshot (changes in a burst make
one) and hands it to the pages: a long transcript costs those threads nothing. The screen-pop lookup runs on
its own small pool.

Codes are named as everywhere else, by the vocabulary (``[scripts] vocabulary``): the agent's state in the
snapshot, a rule by its description in the rules in force; the page gets the tables it names the rest with
(severities, directions, dispositions, ticket and callback states and kinds) from :meth:`DeskHub.page_names`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from contactcenter.desktop.assist import MISSED, SAID, CheckItem, Suggestions, checklist
from contactcenter.records import CallRecord, RuleHitRecord, UtteranceRecord
from contactcenter.settings import Settings
from contactcenter.speech.rules import RuleSet
from contactcenter.telephony.agent_state import AgentStatus
from contactcenter.telephony.desk import DeskCall
from contactcenter.vocabulary import RULE, Vocabulary

log = logging.getLogger(__name__)
TRANSCRIPT_SHOWN = 300  # lines of a call kept for the page (the store keeps the whole transcript)
CALLS_KEPT = 20  # ended calls kept for the wrap-up and the page's recent list

#: The vocabulary's tables the page names codes with (the screen-pop's calls, tickets and callbacks, the
#: alerts' severities, the transcript's legs, who changed a customer record).
PAGE_KINDS = (
    "severity",
    "direction",
    "disposition",
    "check",
    "leg",
    "ticket_status",
    "callback_kind",
    "callback_state",
    "role",
)
#: What the page calls each moment of a call: the desk's own states of a call in progress, which no stored
#: code (and so no vocabulary table) has.
CALL_STATES = {
    "ringing": "振铃",
    "answered": "通话中",
    "hung_up": "已挂机",
    "ended": "已结束",
    "abandoned": "未接",
    "refused": "已拒接",
    "answered_elsewhere": "同事已接听",  # a team call another agent took
    "ring_ended": "未接",  # a team call that went to the overflow desk, or whose caller hung up
    "duplicate": "同事已接听",  # a team call this desk answered in the same instant as another; ended here
}
#: Calls that are over and need nothing more from the agent (no wrap-up).
FINISHED = ("ended", "abandoned", "refused", "answered_elsewhere", "ring_ended", "duplicate")


@dataclass
class Alert:
    rule_id: str
    description: str  # the rule's name: its description in the rules in force
    severity: str  # the rule's severity code; the page names it from the vocabulary
    matched_text: str
    suggestion: str
    at_s: float | None
    shown_at: float  # time.time() when the hub got the finding (the benchmark's start)


@dataclass
class CallView:
    """One call as the agent's page shows it."""

    sip_call_id: str
    direction: str
    number: str
    caller_name: str
    state: str
    invited_at: str
    answer_at: float | None = None  # when auto-answer fires (epoch seconds), while ringing
    rings: int = 0
    muted: bool = False
    held: bool = False
    had_hold: bool = False
    attended: bool = False
    callback_id: int | None = None
    call_id: int | None = None  # the store's id, once stored
    wrapped_up: bool = False
    transferred_to: str = ""
    screen_pop: dict[str, Any] | None = None
    screen_pop_ms: float | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[CheckItem] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def shown(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_label"] = CALL_STATES.get(self.state, self.state)
        data["checklist"] = [asdict(item) for item in self.checklist if self.had_hold or not item.around_hold]
        return data


class DeskHub:
    """The state of one agent's desktop, fed by the desk and read by the page."""

    def __init__(
        self,
        settings: Settings,
        status: AgentStatus,
        *,
        rules: Callable[[], RuleSet | None],
        speech_on: bool,
        lookup: Callable[[str], dict[str, Any] | None] | None = None,
        speech_off_reason: str = "",
        vocabulary: Vocabulary | None = None,
    ) -> None:
        self.settings = settings
        # VocabularyError when the file cannot be used: `run` says so in one line before it answers calls
        self.vocabulary = vocabulary if vocabulary is not None else Vocabulary.load(settings.scripts.vocabulary)
        self.status = status
        self.rules = rules
        self.speech_on = speech_on
        self.speech_off_reason = speech_off_reason
        self.suggestions = Suggestions(settings)
        self.lookup = lookup
        self.calls: dict[str, CallView] = {}  # in order of arrival; ended ones kept for the wrap-up
        self.dialling: str | None = None  # a number the agent is calling, until it answers or fails
        self.notice: str = ""  # the last message for the agent (a failed dial, a transfer refused)
        self.version = 0
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="screen-pop")
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = set()
        self._wake = threading.Event()
        self._closed = False
        self._notifier = threading.Thread(target=self._notify_pages, name="desk-hub", daemon=True)
        self._notifier.start()

    # ------------------------------------------------------------------------------------- from the desk

    def desk_changed(self, what: str, desk_call: DeskCall) -> None:
        """The desk's ``on_change`` (chained after the terminal's)."""
        call = desk_call.call
        with self._lock:
            view = self.calls.get(call.sip_call_id)
            if view is None:
                view = self._new_view(desk_call)
            control = desk_call.control
            view.muted, view.held = control.muted, control.held
            view.attended, view.callback_id, view.rings = desk_call.attended, desk_call.callback_id, desk_call.rings
            if what in ("held", "resumed"):
                view.had_hold = view.had_hold or what == "held"
            elif what in ("transferred", "transfer_failed"):
                self.notice = "转接成功" if what == "transferred" else "转接失败,通话仍在继续"
            elif what == "answered":
                view.state, view.answer_at = "answered", None
                self.dialling = None
                late = desk_call.rings > self.settings.ring.apology_after_rings
                view.checklist = checklist(self._rules(), direction=view.direction, late=late, speech_on=self.speech_on)
            elif what in CALL_STATES:
                view.state = what
            if what == "ended" and desk_call.record is not None:
                view.call_id = desk_call.record.id
            self._trim()
        self._changed()

    def _new_view(self, desk_call: DeskCall) -> CallView:
        call, ring = desk_call.call, self.settings.ring
        self.notice = ""  # a new call: what was said about the last one is old news
        view = CallView(
            sip_call_id=call.sip_call_id,
            direction=call.direction,
            number=call.remote_number,
            caller_name=call.caller_name,
            state="ringing",
            invited_at=call.invited_at.isoformat(),
        )
        if call.direction == "inbound":
            view.answer_at = call.invited_at.timestamp() + ring.answer_after_rings * ring.ring_period_seconds
        self.calls[call.sip_call_id] = view
        if self.lookup is not None and call.remote_number:
            self._pool.submit(self._screen_pop, view, call.remote_number)
        return view

    def _screen_pop(self, view: CallView, number: str) -> None:
        assert self.lookup is not None
        started = time.perf_counter()
        try:
            found = self.lookup(number)
        except Exception:
            log.exception("screen-pop lookup for a call failed")
            return
        with self._lock:
            view.screen_pop = found
            view.screen_pop_ms = round((time.perf_counter() - started) * 1000, 1)
        self._changed()

    # -------------------------------------------------------------------------------- from the speech side

    def observe(self, hook: str, arguments: dict[str, Any]) -> None:
        """Every event the desk publishes; the page needs ``utterance`` and ``rule_hit``."""
        if hook not in ("utterance", "rule_hit"):
            return
        call = arguments.get("call")
        if not isinstance(call, CallRecord):
            return
        with self._lock:
            view = self.calls.get(call.sip_call_id)
            if view is None:
                return
            if hook == "utterance":
                utterance = arguments.get("utterance")
                if not isinstance(utterance, UtteranceRecord):
                    return
                view.transcript.append(
                    {"leg": utterance.leg, "start_s": round(utterance.start_s, 1), "text": utterance.text}
                )
                del view.transcript[:-TRANSCRIPT_SHOWN]
            else:
                hit = arguments.get("hit")
                if not isinstance(hit, RuleHitRecord):
                    return
                self._hit(view, hit)
        self._changed()

    def _hit(self, view: CallView, hit: RuleHitRecord) -> None:
        if hit.kind == "violation":
            view.alerts.append(
                Alert(
                    rule_id=hit.rule_id,
                    description=self.rule_names().name(RULE, hit.rule_id),
                    severity=hit.severity,
                    matched_text=hit.matched_text,
                    suggestion=self.suggestions.for_hit(hit.rule_id, hit.matched_text),
                    at_s=hit.at_s,
                    shown_at=time.time(),
                )
            )
            return
        for item in view.checklist:
            if item.rule_id == hit.rule_id:
                item.status = SAID if hit.kind == "satisfied" else MISSED if item.status != SAID else item.status

    # ------------------------------------------------------------------------------------- the agent

    def agent_changed(self, status: AgentStatus) -> None:
        with self._lock:
            self.status = status
        self._changed()

    def mark_wrapped_up(self, sip_call_id: str) -> None:
        with self._lock:
            view = self.calls.get(sip_call_id)
            if view is not None:
                view.wrapped_up = True
        self._changed()

    def set_dialling(self, number: str | None, notice: str = "") -> None:
        with self._lock:
            self.dialling = number
            if notice:
                self.notice = notice
        self._changed()

    def say(self, notice: str) -> None:
        with self._lock:
            self.notice = notice
        self._changed()

    # -------------------------------------------------------------------------------------- the page

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            status = self.status
            views = list(self.calls.values())
            current = next((v for v in reversed(views) if v.state in ("ringing", "answered")), None)
            wrap_up = next(
                (v for v in reversed(views) if v.attended and v.state in ("hung_up", "ended") and not v.wrapped_up),
                None,
            )
            return {
                "version": self.version,
                "sent_at": time.time(),
                "agent": {
                    "state": status.state,
                    "label": self.vocabulary.name("agent_state", status.state),
                    "reason": status.reason,
                    "since": status.since.isoformat(),
                    "wrap_up_until": status.wrap_up_until.isoformat() if status.wrap_up_until else None,
                    "after_call": status.after_call,
                },
                "speech_on": self.speech_on,
                "speech_off_reason": self.speech_off_reason,
                "dialling": self.dialling,
                "notice": self.notice,
                "current": current.shown() if current is not None else None,
                "ringing": [v.shown() for v in views if v.state == "ringing" and v is not current],
                "wrap_up": wrap_up.shown() if wrap_up is not None else None,
                "recent": [
                    {
                        "sip_call_id": v.sip_call_id,
                        "number": v.number,
                        "state_label": CALL_STATES.get(v.state, v.state),
                        "invited_at": v.invited_at,
                        "wrapped_up": v.wrapped_up,
                    }
                    for v in reversed(views)
                    if v.state in (*FINISHED, "hung_up")
                ][:10],
            }

    def views(self) -> list[CallView]:
        with self._lock:
            return list(self.calls.values())

    def view(self, sip_call_id: str) -> CallView | None:
        with self._lock:
            return self.calls.get(sip_call_id)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of snapshots for one open page (call from the page's event loop)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=8)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subscribers = {(loop, q) for loop, q in self._subscribers if q is not queue}

    def page_names(self) -> dict[str, dict[str, str]]:
        """The vocabulary's tables the page names codes with, kind → code → name."""
        return {kind: self.vocabulary.names(kind) for kind in PAGE_KINDS}

    def rule_names(self) -> Vocabulary:
        """The vocabulary with the rules in force named by their descriptions (admins may change them while
        the desk runs, so asked for each finding; a rule not in force is shown by its id)."""
        rules = self._rules()
        if rules is None:
            return self.vocabulary
        return self.vocabulary.with_rules({rule.spec.id: rule.spec.description for rule in rules.rules})

    # ------------------------------------------------------------------------------------------ internals

    def _rules(self) -> RuleSet | None:
        try:
            return self.rules()
        except Exception:
            log.exception("rules in force could not be read for the checklist")
            return None

    def _trim(self) -> None:
        ended = [key for key, v in self.calls.items() if v.state in FINISHED]
        for key in ended[:-CALLS_KEPT]:
            del self.calls[key]

    def _changed(self) -> None:
        with self._lock:
            self.version += 1
        self._wake.set()

    def _notify_pages(self) -> None:
        """The notifier thread: one snapshot per wake-up (a burst of changes makes one), to every open page."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                subscribers = list(self._subscribers)
                if not subscribers:
                    continue
                snapshot = self.snapshot()
            for loop, queue in subscribers:
                try:
                    loop.call_soon_threadsafe(_offer, queue, snapshot)
                except RuntimeError:  # the page's loop is closed
                    self.unsubscribe(queue)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _offer(queue: asyncio.Queue[dict[str, Any]], snapshot: dict[str, Any]) -> None:
    """Newest snapshot wins: a page that cannot keep up skips the ones in between."""
    while queue.full():
        queue.get_nowait()
    queue.put_nowait(snapshot)
