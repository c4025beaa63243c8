"""What the agent can do from the desktop, in one place: the page's routes call these and nothing else.

Each action either does what it says or raises :class:`DesktopError` with a one-line reason in Chinese that
the page shows; none of them can drop a call: the desk owns the calls, this only asks it. Database work
(screen-pop, wrap-up, callbacks, customers, the agent's state history) never runs on a telephony thread, and
the state history is written by its own thread so a slow or lost database never holds up the agent. The
agent's own findings (我的质检) are read only when the page asks, on its request thread.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.encoders import jsonable_encoder

from contactcenter.callbacks.book import CallbackBook, CallbackError, CallbackFilter
from contactcenter.desktop import findings
from contactcenter.desktop.hub import DeskHub
from contactcenter.phones import clean_phone, phone_key, phone_problem
from contactcenter.records import CallbackRecord
from contactcenter.settings import Settings
from contactcenter.storage.customers import (
    EDITABLE,
    LIMITS,
    SALUTATIONS,
    customer_history,
    find_customer,
    upsert_customer,
)
from contactcenter.storage.database import Database
from contactcenter.storage.review_queue import QueueError, raise_dispute
from contactcenter.storage.screen_pop import screen_pop
from contactcenter.telephony.agent_history import AgentHistory
from contactcenter.telephony.agent_state import AgentState, AgentStateError, AgentStatus
from contactcenter.telephony.control import CallControl
from contactcenter.telephony.desk import Desk, DeskCall, HeadsetBusy
from contactcenter.wrap_up.form import WrapUpError, WrapUpForm, WrapUpNotSaved, wrap_up_defaults
from contactcenter.wrap_up.save import closing_marker, save_wrap_up

log = logging.getLogger(__name__)
DIGITS = re.compile(r"^[0-9*#A-D]{1,32}$")
Publish = Callable[..., None]


class DesktopError(Exception):
    """An action the agent asked for that cannot be done; ``message`` is for the page."""

    def __init__(self, message: str, status: int = 409, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.errors = message, status, errors or {}


class AgentDesktop:
    """The agent's actions on the desk, the state history writer and the page's data."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None,
        desk: Desk,
        agent: AgentState,
        hub: DeskHub,
        publish: Publish,
    ) -> None:
        self.settings = settings
        self.database = database
        self.desk = desk
        self.agent = agent
        self.hub = hub
        self.publish = publish
        self.extension = settings.sip.user
        self.history = AgentHistory(database, self.extension, agent)
        # A call the agent places holds the headset from the click, but is on it (``desk.headset_call()``) only
        # once answered: while it rings, this says the headset is taken, so a second click is refused.
        self._dialling = False
        self._dial_lock = threading.Lock()
        self._cancel = threading.Event()  # set to stop the call the agent is dialling (a fresh one per dial)
        self._last_state = agent.status.state
        self._offer_state = agent.status.state
        self._dispute_lock = threading.Lock()  # a double click sends two disputes: the second sees the first
        agent.add_listener(hub.agent_changed)
        agent.add_listener(self._left_wrap_up)
        agent.add_listener(self._offer_waiting_callback)

    # ------------------------------------------------------------------------------------- life

    def start(self) -> None:
        """Start storing the agent's state history."""
        self.history.start()

    def stop(self) -> None:
        self.history.stop()

    def _left_wrap_up(self, status: AgentStatus) -> None:
        """Wrap-up ended without a save (its timer ran out, or the agent clicked 就绪): a callback whose call
        connected is closed as reached, else the scheduler would reopen it and call the customer again."""
        left = self._last_state == "wrap_up" and status.state != "wrap_up"
        self._last_state = status.state
        if not left or self.database is None:
            return
        unsaved = [
            (view.callback_id, view.call_id)
            for view in self.hub.views()
            if view.attended and view.callback_id is not None and view.call_id is not None and not view.wrapped_up
        ]
        if unsaved:
            threading.Thread(target=self._close_reached, args=(unsaved,), name="callbacks reached", daemon=True).start()

    def _close_reached(self, unsaved: list[tuple[int, int]]) -> None:
        book = CallbackBook(self._database(), self.settings)
        for callback_id, call_id in unsaved:
            try:
                if book.get(callback_id).state == "in_progress":
                    book.done(callback_id, note=f"{closing_marker(call_id)} 已接通,坐席未做话后处理")
            except Exception:
                log.exception("callback %s could not be closed after its call", callback_id)

    # ------------------------------------------------------------------------------------ the agent

    def set_ready(self) -> None:
        self.agent.set_ready()

    def set_not_ready(self, reason: str) -> None:
        try:
            self.agent.set_not_ready(reason)
        except AgentStateError as exc:
            raise DesktopError(str(exc), 422) from None

    # ------------------------------------------------------------------------------------ the call

    def _desk_call(self, sip_call_id: str | None) -> DeskCall:
        calls = self.desk.active_calls()
        if sip_call_id:
            found = next((c for c in calls if c.call.sip_call_id == sip_call_id), None)
            if found is None:
                raise DesktopError("该通话已结束", 404)
            return found
        on_headset = [c for c in calls if c.control.on_headset]
        if on_headset:
            return on_headset[0]
        ringing = [c for c in calls if c.call.ringing and c.attended]
        if ringing:
            return ringing[0]
        raise DesktopError("当前没有通话", 404)

    def _control(self, sip_call_id: str | None) -> CallControl:
        desk_call = self._desk_call(sip_call_id)
        if not desk_call.control.on_headset:
            raise DesktopError("该通话不在您的耳机上", 409)
        return desk_call.control

    def answer(self, sip_call_id: str | None) -> None:
        desk_call = self._desk_call(sip_call_id)
        if not desk_call.control.answer_now():
            raise DesktopError("该来电已接听或已挂断", 409)

    def mute(self, on: bool) -> None:
        if not self._control(None).mute(on):
            raise DesktopError("已经是该状态", 409)

    def hold(self, on: bool) -> None:
        if not self._control(None).hold(on):
            raise DesktopError("已经是该状态", 409)

    def hang_up(self) -> None:
        """Hang up the call on the headset; while a call the agent placed still rings, stop dialling it."""
        with self._dial_lock:
            cancel = self._cancel if self._dialling and self.desk.headset_call() is None else None
        if cancel is not None:
            cancel.set()
            return
        if not self._control(None).hang_up():
            raise DesktopError("通话未接通", 409)

    def send_dtmf(self, digits: str) -> None:
        if not DIGITS.match(digits):
            raise DesktopError("按键只能是 0-9、*、#", 422)
        if not self._control(None).send_dtmf(digits):
            raise DesktopError("对方不支持按键信号,未发送", 409)

    def transfer(self, target: str) -> None:
        """Blind transfer (REFER); blocks until the transferee's outcome, so call it off the event loop."""
        target = target.strip()
        if not re.fullmatch(r"[0-9A-Za-z_.+-]{1,32}", target):
            raise DesktopError("转接号码只能是分机号或电话号码", 422)
        control = self._control(None)
        try:
            result = control.transfer(target)
        except ValueError as exc:
            raise DesktopError(f"转接号码无效: {exc}", 422) from None
        if not result.ok:
            self.hub.say(f"转接到 {target} 失败({result.reason}),通话仍在继续")
            raise DesktopError(f"转接失败: {result.reason}", 502)
        self.hub.say(f"已转接到 {target}")

    # --------------------------------------------------------------------------------- screen-pop

    def lookup(self, number: str) -> dict[str, Any] | None:
        """The screen-pop for a ringing call (the hub's lookup thread)."""
        if self.database is None:
            return None
        with self.database.session() as session:
            return jsonable_encoder(screen_pop(session, number))

    # ---------------------------------------------------------------------------------- wrap-up

    def _database(self) -> Database:
        if self.database is None:
            raise DesktopError("没有数据库,无法保存", 503)
        return self.database

    def _wrap_up_view(self, sip_call_id: str) -> Any:
        view = self.hub.view(sip_call_id)
        if view is None:
            raise DesktopError("找不到该通话", 404)
        if view.call_id is None:
            raise DesktopError("通话仍在保存中,请稍候几秒再保存", 409)
        return view

    def wrap_up_form(self, sip_call_id: str) -> dict[str, Any]:
        view = self._wrap_up_view(sip_call_id)
        with self._database().session() as session:
            form = wrap_up_defaults(session, self.settings, view.call_id)
        data = form.model_dump(mode="json")
        if view.callback_id is not None:
            data["closes_callback_id"] = view.callback_id
            data["callback_outcome"] = data.get("callback_outcome") or "done"
        return data

    def save_wrap_up(self, sip_call_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        view = self._wrap_up_view(sip_call_id)
        try:
            form = WrapUpForm.from_input(fields)
            record = save_wrap_up(
                self._database(),
                self.settings,
                call_id=view.call_id,
                form=form,
                agent=self.extension,
                publish=self.publish,
            )
        except WrapUpNotSaved as exc:  # the database failed: nothing kept, the agent may try again
            raise DesktopError(exc.errors.get("form", "未保存,请重试"), 503, exc.errors) from None
        except WrapUpError as exc:
            raise DesktopError("请检查标红的字段", 422, exc.errors) from None
        self.hub.mark_wrapped_up(sip_call_id)
        self.agent.wrap_up_done()
        return jsonable_encoder(record)

    # -------------------------------------------------------------------------------- callbacks

    def callbacks(self, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Mine (due soon, overdue) and anyone's that are due: what the agent should call next."""
        now = now or datetime.now(UTC)
        book = CallbackBook(self._database(), self.settings)
        open_states = ("pending", "due")
        mine = book.list(CallbackFilter(states=open_states, owner=self.extension, due_before=now + timedelta(days=1)))
        anyone = [
            c
            for c in book.list(CallbackFilter(states=open_states, due_before=now + timedelta(hours=1)))
            if not c.owner_only or c.owner_extension == self.extension
        ]
        shown: dict[str, list[dict[str, Any]]] = {"overdue": [], "mine": [], "anyone": []}
        seen: set[int] = set()
        for callback in sorted([*mine, *anyone], key=lambda c: c.due_at):
            if callback.id in seen:
                continue
            seen.add(callback.id)
            data = jsonable_encoder(callback)
            data["overdue"] = callback.due_at <= now
            if callback.due_at <= now:
                shown["overdue"].append(data)
            elif callback.owner_extension == self.extension:
                shown["mine"].append(data)
            else:
                shown["anyone"].append(data)
        return shown

    def _reserve_headset(self) -> str | None:
        """Hold the headset for a call the agent places, or say why not: the check and the hold are one step,
        so two clicks at once (or a click and the scheduler's auto-dial) cannot both dial; the loser would
        otherwise count a missed attempt against a customer nobody called. Free it with ``_dial_over``."""
        with self._dial_lock:
            if self._dialling:
                return "正在拨号,请等接通或结束后再拨"
            if self.desk.headset_call() is not None:
                return "您正在通话中"
            if self.agent.status.state == "ringing":  # a customer's call: they would ring until this one ends
                return "有来电正在振铃,请先接听"
            self._dialling = True
            self._cancel = threading.Event()  # from the click on: a hang-up before the INVITE goes still counts
            return None

    def _dial_over(self) -> None:
        with self._dial_lock:
            self._dialling = False

    def dial_callback(self, callback_id: int) -> None:
        """Click-to-dial: the desk calls the customer and puts the call on the agent's headset (in a thread:
        ringing can take 30 s). The wrap-up then closes the callback as done or missed."""
        book = CallbackBook(self._database(), self.settings)
        refused = self._reserve_headset()
        if refused is not None:
            raise DesktopError(refused, 409)
        try:
            callback = book.start_by_agent(callback_id)
        except BaseException:
            self._dial_over()
            raise
        if callback is None:
            self._dial_over()
            raise DesktopError("该回访已在处理或已关闭", 409)
        threading.Thread(
            target=self._dial_reserved, args=(book, callback), name=f"callback {callback_id}", daemon=True
        ).start()

    def _dial_reserved(self, book: CallbackBook, callback: CallbackRecord) -> None:
        """Dial a callback the headset was reserved for (``_reserve_headset``); the reservation ends once the
        call is on the headset (answered) or did not connect."""
        try:
            self._dial_callback(book, callback)
        finally:
            self._dial_over()

    def _dial_callback(self, book: CallbackBook, callback: CallbackRecord) -> None:
        self.hub.set_dialling(callback.phone)
        with self._dial_lock:
            cancel = self._cancel
        try:
            result = self.desk.dial(callback.phone, timeout=30.0, attended=True, callback_id=callback.id, cancel=cancel)
        except HeadsetBusy as exc:
            self._missed(book, callback, "agent_busy", f"未拨出: {exc}")
            return
        except Exception:
            log.exception("callback %s could not be dialled", callback.id)
            self._missed(book, callback, "failed", "拨号失败,稍后重试(详情见坐席端日志)")
            return
        if result.outcome == "cancelled":  # the agent stopped it while it rang: nobody was called
            try:
                book.give_back(callback.id)
            except Exception:
                log.exception("callback %s could not be put back", callback.id)
            self.hub.set_dialling(None, "已取消拨号,回访仍在待办")
        elif result.call is None:  # busy, no answer, failed: named as the callback's outcome is everywhere
            why = self.hub.vocabulary.name("callback_outcome", result.outcome)
            status = re.match(r"\d{3}\b", result.reason)  # the SIP status, for whoever looks into it; not its English
            self._missed(
                book, callback, result.outcome, f"未接通({why}{f',SIP {status[0]}' if status else ''}),稍后重试"
            )

    def _missed(self, book: CallbackBook, callback: CallbackRecord, outcome: str, notice: str) -> None:
        try:
            book.missed(callback.id, outcome)
        except (CallbackError, Exception):
            log.exception("callback %s could not be put back", callback.id)
        self.hub.set_dialling(None, notice)

    def _offer_waiting_callback(self, status: AgentStatus) -> None:
        """The agent has just become ready: with ``[callbacks] auto_dial``, the oldest callback a caller left
        with the overflow desk (anyone's, due) is dialled to their headset at once. Without auto_dial it is
        on their page (anyone's due callbacks), to click."""
        came_from, self._offer_state = self._offer_state, status.state
        if status.state != "ready" or came_from == "ringing":  # a missed ring: nothing new to offer
            return
        if not self.settings.callbacks.auto_dial or self.database is None:
            return
        threading.Thread(target=self._dial_oldest_overflow, name="overflow callback", daemon=True).start()

    def _dial_oldest_overflow(self) -> None:
        try:
            book = CallbackBook(self._database(), self.settings)
            waiting = book.list(
                CallbackFilter(states=("pending", "due"), kinds=("overflow",), due_before=datetime.now(UTC), limit=50)
            )
            for callback in sorted(waiting, key=lambda c: c.due_at):
                if callback.owner_extension and callback.owner_extension != self.extension:
                    continue
                outcome = self._dial_for_agent(callback, offered=True)
                if outcome != "taken":  # dialled, or the agent is busy now: either way, no more
                    return
        except Exception:
            log.exception("the callbacks left with the overflow desk could not be offered")

    def dial_for_agent(self, callback: CallbackRecord) -> bool:
        """The scheduler's due callback (auto_dial): see :meth:`_dial_for_agent`; False leaves it to run's own
        dialer."""
        return self._dial_for_agent(callback) != "busy"

    def _dial_for_agent(self, callback: CallbackRecord, offered: bool = False) -> str:
        """A due callback to the agent's headset when the agent is ready: ``dialled``; ``busy`` when the agent
        is not ready or busy, or it is a survey (the survey plugin calls those itself); ``taken`` when another
        agent or desk took it first (nothing to dial). The callback is taken first (due → in_progress), as
        the dialer takes it, so no other agent or desk calls the same customer meanwhile; one ``offered`` to
        the agent as they became ready is taken whether or not the scheduler has fired it yet (pending)."""
        if callback.kind == "survey" or self.agent.status.state != "ready":
            return "busy"
        if self._reserve_headset() is not None:
            return "busy"
        try:
            book = CallbackBook(self._database(), self.settings)
            taken = book.start_by_agent(callback.id) if offered else book.start_attempt(callback.id)
        except BaseException:
            self._dial_over()
            raise
        if taken is None:
            self._dial_over()
            return "taken"
        threading.Thread(
            target=self._dial_reserved, args=(book, taken), name=f"callback {callback.id}", daemon=True
        ).start()
        return "dialled"

    # -------------------------------------------------------------------------------- customers

    def customer(self, number: str) -> dict[str, Any]:
        if not phone_key(number):
            raise DesktopError("请输入电话号码", 422)
        with self._database().session() as session:
            found = find_customer(session, number)
            if found is None:
                return {"customer": None, "history": []}
            return {
                "customer": {field: getattr(found, field) for field in ("id", *EDITABLE)},
                "history": [
                    {"changed_by": h.changed_by, "changed_at": h.changed_at.isoformat(), "change": h.change}
                    for h in customer_history(session, found.id, limit=50)
                ],
            }

    def save_customer(self, number: str, values: dict[str, Any]) -> dict[str, Any]:
        """The record as the agent edited it on the page (its change kept in the history)."""
        errors = {}
        for field in ("name", "company", "salutation", "notes"):
            value = values.get(field, "")
            if not isinstance(value, str):
                errors[field] = "须为文字"
            elif len(value) > LIMITS[field]:
                errors[field] = f"不能超过 {LIMITS[field]} 个字"
        if values.get("salutation") and values.get("salutation") not in SALUTATIONS:
            errors["salutation"] = f"称呼须为 {' / '.join(SALUTATIONS)} 或留空"
        problem = phone_problem(number)
        if problem is not None:
            errors["phone"] = problem.zh
        if not isinstance(values.get("vip", False), bool):
            errors["vip"] = "须为是/否"
        if errors:
            raise DesktopError("请检查标红的字段", 422, errors)
        clean = {k: values[k] for k in EDITABLE if k in values and k != "phone"}
        number = clean_phone(number)  # full-width digits as ASCII, as the wrap-up and the import store them
        with self._database().session() as session:
            upsert_customer(session, phone=number, values=clean, changed_by=f"agent:{self.extension}")
            session.commit()
        return self.customer(number)

    # --------------------------------------------------------------------------- my findings, disputes

    def my_findings(self, now: datetime | None = None) -> dict[str, Any]:
        """The agent's recent calls with findings and their disputes (``findings.my_findings``)."""
        if self.database is None:
            raise DesktopError("没有数据库,无法查看质检结果", 503)
        names = self.hub.rule_names()
        with self.database.session() as session:
            calls = findings.my_findings(session, self.extension, now or datetime.now(UTC), names)
        return {"days": findings.DAYS, "limit": findings.CALLS, "reason_max": findings.REASON_MAX, "calls": calls}

    def dispute(self, call_id: int, rule_id: str, reason: str) -> dict[str, Any]:
        """The agent disputes a finding on a call they answered; the team lead decides it (console, /disputes).
        Refused in one line, with nothing stored: another agent's call (403), a finding the call does not have,
        an empty or too long reason, a finding already disputed (open, or decided: the decision is final)."""
        if len(reason.strip()) > findings.REASON_MAX:
            raise DesktopError(f"申诉理由不能超过 {findings.REASON_MAX} 字", 422)
        with self._dispute_lock, self._database().session() as session:
            if not findings.is_my_call(session, self.extension, call_id):
                raise DesktopError("只能对自己接听的通话申诉", 403)
            if not findings.has_finding(session, call_id, rule_id):
                raise DesktopError("这通电话没有这条质检结果,无法申诉", 422)
            if findings.decided(session, call_id, rule_id):
                raise DesktopError("组长已裁定这条质检结果,裁定为最终结果,不能再申诉", 409)
            try:
                dispute_id = raise_dispute(
                    session, call_id, rule_id, findings.raised_by(session, self.extension), reason
                )
            except QueueError as exc:
                raise DesktopError(str(exc), 422) from None
        states = findings.dispute_state_names(self.hub.vocabulary)
        return {"id": dispute_id, "state": "open", "state_name": states["open"]}
