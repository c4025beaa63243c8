"""The customer table (客户数据库): find a customer by any spelling of their number, and change a record
with its history kept (who changed which field, when)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.phones import phone_key
from contactcenter.storage.models import Customer, CustomerChange

#: The fields a person may change on a customer record.
EDITABLE = ("name", "company", "phone", "salutation", "vip", "notes")


def find_customer(session: Session, number: str) -> Customer | None:
    """The customer whose number is ``number`` however written (the newest record if there are several)."""
    key = phone_key(number)
    if not key:
        return None
    return session.scalars(
        select(Customer).where(Customer.phone_key == key).order_by(Customer.id.desc()).limit(1)
    ).first()


def upsert_customer(
    session: Session, *, phone: str, values: Mapping[str, Any], changed_by: str, customer_id: int | None = None
) -> tuple[Customer, dict[str, list[Any]]]:
    """Create or update the customer with this number (or ``customer_id``), recording what changed in
    ``customer_changes``. Returns the customer and the change (field -> [before, after]; empty: none).
    The caller commits; values outside :data:`EDITABLE` are an error, not ignored."""
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not customer fields: {', '.join(sorted(unknown))}")
    customer = session.get(Customer, customer_id) if customer_id is not None else find_customer(session, phone)
    created = customer is None
    if customer is None:
        customer = Customer(phone=phone, phone_key=phone_key(phone), name="", company="", salutation="", notes="")
        customer.vip = False
        session.add(customer)
    change: dict[str, list[Any]] = {}
    for field, value in {"phone": phone, **values}.items():
        before = None if created else getattr(customer, field)
        if created or before != value:
            setattr(customer, field, value)
            change[field] = [before, value]
    if "phone" in change:
        customer.phone_key = phone_key(customer.phone)
    if change:
        now = datetime.now(UTC)
        customer.updated_at = now
        session.flush()
        session.add(CustomerChange(customer_id=customer.id, changed_by=changed_by, changed_at=now, change=change))
    return customer, change
