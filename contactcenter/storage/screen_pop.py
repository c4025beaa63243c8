"""The screen pop (来电弹屏): what the agent's desktop shows the moment a number rings — who the customer is,
their last calls, the tickets still open and the callbacks still owed.

It runs while the phone rings, so it must answer within 100 ms with 100,000 customers and 1,000,000 calls
(``bench/screen_pop_bench.py``). Every lookup is an index probe with a small LIMIT: the customer by
``phone_key``; calls, tickets and callbacks by each spelling of the number (:func:`phone_spellings`) and by
``customer_id``, each probe reading at most the rows it returns from a composite index, so a number that
has called ten thousand times costs what a new one does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Select, String, bindparam, select, union
from sqlalchemy.orm import Session

from contactcenter.phones import phone_key
from contactcenter.storage.customers import find_customer, phone_spellings
from contactcenter.storage.models import Agent, Call, Callback, Customer, Ticket

OPEN_TICKET_STATES = ("open", "in_progress")
OPEN_CALLBACK_STATES = ("pending", "due", "in_progress")
#: At most this many open tickets and callbacks are shown (newest / soonest first): a pop is not a report.
OPEN_LIMIT = 20


@dataclass(frozen=True)
class PopCustomer:
    id: int
    name: str
    company: str
    phone: str
    salutation: str  # 先生 | 女士 | ""
    vip: bool
    notes: str

    @property
    def addressed_as(self) -> str:
        """How the agent greets them: 张先生 from 张三 + 先生; the name itself without a salutation."""
        if self.name and self.salutation:
            return self.name[0] + self.salutation
        return self.name


@dataclass(frozen=True)
class PopCall:
    id: int
    invited_at: datetime
    direction: str  # inbound | outbound
    remote_number: str
    category: str | None
    compliance_score: float | None
    agent_extension: str | None
    agent_name: str | None
    disposition: str


@dataclass(frozen=True)
class PopTicket:
    id: int
    category: str
    status: str
    purpose: str
    summary: str
    due_at: datetime | None
    created_at: datetime
    overdue: bool


@dataclass(frozen=True)
class PopCallback:
    id: int
    kind: str
    state: str
    due_at: datetime
    reason: str
    overdue: bool


@dataclass(frozen=True)
class ScreenPop:
    """Everything the desk knows about a number. ``customer`` is None for a number not in the customer
    table; its calls, tickets and callbacks are still found by the number."""

    number: str  # as asked
    key: str  # phones.phone_key(number); "" when it has no digits
    customer: PopCustomer | None
    calls: tuple[PopCall, ...]  # newest first
    tickets: tuple[PopTicket, ...]  # open or in progress, newest first
    callbacks: tuple[PopCallback, ...]  # pending, due or in progress, soonest first
    at: datetime  # when it was looked up ("now" for the overdue flags)

    @property
    def known(self) -> bool:
        return self.customer is not None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (times stay datetimes: the caller formats them in its zone)."""
        data = asdict(self)
        if self.customer is not None:
            data["customer"]["addressed_as"] = self.customer.addressed_as
        return data


# The statements are built once, with bind parameters: building and cache-keying a many-branch UNION on every
# ring cost more than running it. Each branch reads at most LIMIT rows off a composite index.
_CALL_SLOTS = 6  # the number as asked, its key, +86 / 86 / 0086 and trunk-0 forms (SIP headers have no spaces)
_NO_CUSTOMER = 0  # ids start at 1: a probe for customer 0 finds nothing


def _calls_statement() -> Select[Any]:
    limit = bindparam("calls", type_=Integer)
    probes = [
        select(Call.id, Call.invited_at).where(Call.remote_number == bindparam(f"number_{slot}", type_=String))
        for slot in range(_CALL_SLOTS)
    ]
    probes.append(select(Call.id, Call.invited_at).where(Call.customer_id == bindparam("customer_id", type_=Integer)))
    # each probe a subquery of its own: SQLite refuses ORDER BY / LIMIT on the parts of a compound SELECT
    parts = [probe.order_by(Call.invited_at.desc(), Call.id.desc()).limit(limit).subquery() for probe in probes]
    found = union(*(select(part.c.id) for part in parts)).subquery()
    return (
        select(
            Call.id,
            Call.invited_at,
            Call.direction,
            Call.remote_number,
            Call.category,
            Call.compliance_score,
            Call.disposition,
            Agent.extension,
            Agent.name,
        )
        .join(found, found.c.id == Call.id)
        .outerjoin(Agent, Agent.id == Call.agent_id)
        .order_by(Call.invited_at.desc(), Call.id.desc())
        .limit(limit)
    )


def _open_statement(model: Any, phone: Any, state: Any, states: tuple[str, ...], order: tuple[Any, ...]) -> Any:
    """Open rows of ``model`` for any spelling of the number, or for the customer: two probes, each on its
    (number, state) or (customer_id, state) index, merged."""
    probes = [
        select(model.id).where(phone.in_(bindparam("spellings", expanding=True)), state.in_(states)),
        select(model.id).where(model.customer_id == bindparam("customer_id", type_=Integer), state.in_(states)),
    ]
    parts = [probe.order_by(*order).limit(OPEN_LIMIT).subquery() for probe in probes]
    found = union(*(select(part.c.id) for part in parts)).subquery()
    return select(model).join(found, found.c.id == model.id).order_by(*order).limit(OPEN_LIMIT)


_CALLS = _calls_statement()
_TICKETS = _open_statement(
    Ticket, Ticket.caller_phone, Ticket.status, OPEN_TICKET_STATES, (Ticket.created_at.desc(), Ticket.id.desc())
)
_CALLBACKS = _open_statement(
    Callback, Callback.phone, Callback.state, OPEN_CALLBACK_STATES, (Callback.due_at, Callback.id)
)


def _line_spellings(spellings: tuple[str, ...]) -> list[str]:
    """The spellings a SIP header could carry (no spaces, hyphens or brackets) first, the number as asked
    always; padded by repetition to the statement's slots (a repeated probe costs one more index look-up)."""
    asked, rest = spellings[0], spellings[1:]
    chosen = [asked, *(s for s in rest if s.lstrip("+").isdigit())][:_CALL_SLOTS]
    return chosen + [chosen[-1]] * (_CALL_SLOTS - len(chosen))


def _calls(session: Session, spellings: tuple[str, ...], customer_id: int | None, limit: int) -> list[PopCall]:
    """The newest ``limit`` calls from the number (as the line spells it) or linked to the customer."""
    if limit <= 0 or (not spellings and customer_id is None):
        return []
    numbers = _line_spellings(spellings) if spellings else [""] * _CALL_SLOTS
    parameters: dict[str, Any] = {f"number_{slot}": number for slot, number in enumerate(numbers)}
    parameters.update(calls=limit, customer_id=customer_id or _NO_CUSTOMER)
    return [
        PopCall(
            id=r.id,
            invited_at=r.invited_at,
            direction=r.direction,
            remote_number=r.remote_number,
            category=r.category,
            compliance_score=r.compliance_score,
            agent_extension=r.extension,
            agent_name=r.name,
            disposition=r.disposition,
        )
        for r in session.execute(_CALLS, parameters)
    ]


def _tickets(session: Session, spellings: tuple[str, ...], customer_id: int | None, now: datetime) -> list[PopTicket]:
    parameters = {"spellings": list(spellings), "customer_id": customer_id or _NO_CUSTOMER}
    return [
        PopTicket(
            id=t.id,
            category=t.category,
            status=t.status,
            purpose=t.purpose,
            summary=t.summary,
            due_at=t.due_at,
            created_at=t.created_at,
            overdue=t.due_at is not None and t.due_at < now,
        )
        for t in session.scalars(_TICKETS, parameters)
    ]


def _callbacks(
    session: Session, spellings: tuple[str, ...], customer_id: int | None, now: datetime
) -> list[PopCallback]:
    parameters = {"spellings": list(spellings), "customer_id": customer_id or _NO_CUSTOMER}
    return [
        PopCallback(id=c.id, kind=c.kind, state=c.state, due_at=c.due_at, reason=c.reason, overdue=c.due_at < now)
        for c in session.scalars(_CALLBACKS, parameters)
    ]


def _pop(session: Session, number: str, customer: Customer | None, calls: int, now: datetime | None) -> ScreenPop:
    moment = now or datetime.now(UTC)
    spellings = phone_spellings(number)
    if customer is not None:  # the record may spell its number otherwise than the line did
        spellings = tuple(dict.fromkeys((*spellings, *phone_spellings(customer.phone))))
    customer_id = customer.id if customer is not None else None
    shown = (
        PopCustomer(
            id=customer.id,
            name=customer.name,
            company=customer.company,
            phone=customer.phone,
            salutation=customer.salutation,
            vip=customer.vip,
            notes=customer.notes,
        )
        if customer is not None
        else None
    )
    return ScreenPop(
        number=number,
        key=phone_key(number),
        customer=shown,
        calls=tuple(_calls(session, spellings, customer_id, calls)),
        tickets=tuple(_tickets(session, spellings, customer_id, moment)),
        callbacks=tuple(_callbacks(session, spellings, customer_id, moment)),
        at=moment,
    )


def screen_pop(session: Session, number: str, *, calls: int = 5, now: datetime | None = None) -> ScreenPop:
    """The screen pop for ``number`` written any way (+86 138 0013 8000, 013800138000, …): the customer with
    that number (None if unknown), their last ``calls`` calls, open tickets and callbacks still owed."""
    return _pop(session, number, find_customer(session, number), calls, now)


def customer_pop(
    session: Session, customer_id: int, *, calls: int = 5, now: datetime | None = None
) -> ScreenPop | None:
    """The same for one customer record (the console's customer page); None if there is no such customer.
    Unlike :func:`screen_pop` it keeps to this record when several share a number."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    return _pop(session, customer.phone, customer, calls, now)
