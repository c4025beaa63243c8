"""The customer pages (客户数据库) for reviewers: search customers, and one customer's record with the history
of its changes, its calls, open tickets and callbacks owed; the same as JSON under ``/api/customers``.

Read only: records change on the agent's desktop and by ``contactcenter customers import``. Numbers are masked
for roles not in ``[web] unmasked_roles`` before anything reaches a page or an answer: the phone field, every
before/after value in the history, and any run of digits in free text that could be a phone number, however it
is grouped (138-0013-8000, +86 138 0013 8000, (010) 1234 5678).

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from contactcenter.phones import mask_numbers
from contactcenter.settings import Settings
from contactcenter.speech.redact import redact_numbers
from contactcenter.storage.customers import customer_history, search_customers
from contactcenter.storage.database import Database
from contactcenter.storage.models import Customer
from contactcenter.storage.screen_pop import ScreenPop, customer_pop
from contactcenter.web.auth import SignedIn
from contactcenter.web.guards import TEMPLATES, Blank, Guards, PathId, RowId, Text
from contactcenter.web.queries import local_time, mask_phone

CALLS_SHOWN = 50  # on a customer's page; the calls list has the rest
HISTORY_SHOWN = 200


def mask_text(text: str) -> str:
    """``text`` with every phone and ID number masked but its last four digits, however it is written
    (:func:`contactcenter.phones.mask_numbers`); then spoken numerals (一三八…) as the transcripts mask them."""
    return redact_numbers(mask_numbers(text)) if text else text


def _masked_value(field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return mask_phone(value) if field == "phone" else mask_text(value)


def customer_row(customer: Customer, zone: ZoneInfo, unmasked: bool) -> dict[str, Any]:
    """One customer as the list and the record show it, masked unless ``unmasked``."""
    return {
        "id": customer.id,
        "name": customer.name if unmasked else mask_text(customer.name),  # free text: a number may be typed in
        "company": customer.company if unmasked else mask_text(customer.company),
        "phone": customer.phone if unmasked else mask_phone(customer.phone),
        "salutation": customer.salutation,
        "vip": customer.vip,
        "notes": customer.notes if unmasked else mask_text(customer.notes),
        "created_at": local_time(customer.created_at, zone),
        "updated_at": local_time(customer.updated_at, zone),
    }


def pop_view(pop: ScreenPop, zone: ZoneInfo, unmasked: bool) -> dict[str, Any]:
    """A screen pop as JSON-ready rows: local times, numbers and free text masked unless ``unmasked``."""

    def text(value: str) -> str:
        return value if unmasked else mask_text(value)

    customer = pop.customer
    return {
        "number": pop.number if unmasked else mask_phone(pop.number),
        "known": customer is not None,
        "customer": None
        if customer is None
        else {
            "id": customer.id,
            "name": text(customer.name),
            "company": text(customer.company),
            "phone": customer.phone if unmasked else mask_phone(customer.phone),
            "salutation": customer.salutation,
            "addressed_as": text(customer.addressed_as),
            "vip": customer.vip,
            "notes": text(customer.notes),
        },
        "calls": [
            {
                "id": c.id,
                "invited_at": local_time(c.invited_at, zone),
                "direction": c.direction,
                "remote_number": c.remote_number if unmasked else mask_phone(c.remote_number),
                "category": c.category or "",
                "compliance_score": c.compliance_score,
                "agent_extension": c.agent_extension or "",
                "agent_name": c.agent_name or "",
                "disposition": c.disposition,
            }
            for c in pop.calls
        ],
        "tickets": [
            {
                "id": t.id,
                "category": t.category,
                "status": t.status,
                "purpose": text(t.purpose),
                "summary": text(t.summary),
                "due_at": local_time(t.due_at, zone),
                "created_at": local_time(t.created_at, zone),
                "overdue": t.overdue,
            }
            for t in pop.tickets
        ],
        "callbacks": [
            {
                "id": c.id,
                "kind": c.kind,
                "state": c.state,
                "due_at": local_time(c.due_at, zone),
                "reason": text(c.reason),
                "overdue": c.overdue,
            }
            for c in pop.callbacks
        ],
    }


def add_customer_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database) -> None:
    zone = ZoneInfo(settings.general.timezone)
    page_size = settings.web.page_size
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]

    def listing(query: str, before: int | None, limit: int, unmasked: bool) -> tuple[list[dict[str, Any]], int | None]:
        with database.session() as session:
            found = search_customers(session, query, limit=limit + 1, before_id=before, whole_numbers=not unmasked)
            rows = [customer_row(c, zone, unmasked) for c in found[:limit]]
        return rows, (rows[-1]["id"] if len(found) > limit else None)

    def record(customer_id: int, unmasked: bool) -> dict[str, Any]:
        with database.session() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise HTTPException(status_code=404, detail="no such customer")
            pop = customer_pop(session, customer_id, calls=CALLS_SHOWN)
            changes = customer_history(session, customer_id, HISTORY_SHOWN)
            history = [
                {
                    "id": c.id,
                    "changed_at": local_time(c.changed_at, zone),
                    "changed_by": c.changed_by,
                    "change": {
                        field: values if unmasked else [_masked_value(field, v) for v in values]
                        for field, values in c.change.items()
                    },
                }
                for c in changes
            ]
            shown = customer_row(customer, zone, unmasked)
        view = pop_view(pop, zone, unmasked) if pop is not None else {"calls": [], "tickets": [], "callbacks": []}
        return {
            "customer": shown,
            "history": history,
            "calls": view["calls"],
            "tickets": view["tickets"],
            "callbacks": view["callbacks"],
        }

    @app.get("/customers", response_class=HTMLResponse, include_in_schema=False)
    def customers_page(request: Request, user: Reviewer, q: Text = "", before: Blank[RowId] = None) -> Response:
        rows, next_before = listing(q, before, page_size, guards.unmasked(user))
        next_link = f"/customers?{urlencode({'q': q, 'before': next_before})}" if next_before else ""
        return TEMPLATES.TemplateResponse(
            request, "customers.html", {"user": user, "rows": rows, "q": q, "next_link": next_link, "record": None}
        )

    @app.get("/customers/{customer_id}", response_class=HTMLResponse, include_in_schema=False)
    def customer_page(request: Request, customer_id: PathId, user: Reviewer) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "customers.html", {"user": user, "record": record(customer_id, guards.unmasked(user)), "q": ""}
        )

    @app.get("/api/customers", tags=["customers"])
    def api_customers(
        user: Reviewer,
        q: Text = "",
        before: Blank[RowId] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Customers, newest first: ``q`` is part of a name or company, or the start of a phone number;
        ``next_before`` fetches the next page."""
        rows, next_before = listing(q, before, limit, guards.unmasked(user))
        return {"customers": rows, "next_before": next_before}

    @app.get("/api/customers/{customer_id}", tags=["customers"])
    def api_customer(customer_id: PathId, user: Reviewer) -> dict[str, Any]:
        """One customer: the record, its change history (newest first, each field's ``[before, after]``),
        the last 50 calls, open tickets and callbacks owed."""
        return record(customer_id, guards.unmasked(user))
