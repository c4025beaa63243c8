"""The customer table (客户数据库): find a customer by any spelling of their number, and change a record
with its history kept (who changed which field, when).

Customers carry ``phone_key`` (:func:`contactcenter.phones.phone_key`), but calls, tickets and callbacks keep
the number as it arrived (a SIP From header, an agent's typing). :func:`phone_spellings` lists the usual ways
one key is written, so those rows are found by equality on their indexed columns rather than by normalising
every stored number at query time (which no index could serve).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contactcenter.phones import phone_key
from contactcenter.storage.models import Customer, CustomerChange

#: The fields a person may change on a customer record.
EDITABLE = ("name", "company", "phone", "salutation", "vip", "notes")
#: The longest value each text field takes (the column sizes; notes is TEXT, capped so a pasted file is refused).
LIMITS = {"name": 100, "company": 200, "phone": 32, "salutation": 16, "notes": 20_000}
SALUTATIONS = ("先生", "女士")


def phone_spellings(number: str) -> tuple[str, ...]:
    """The usual ways the number ``number`` is written: as given, its key, with +86 / 86 / 0086 or a trunk 0,
    and grouped with spaces or hyphens (138 0013 8000, 010-12345678). Empty when it has no digits.

    Calls store the number as the SIP From header had it; tickets and callbacks as an agent typed it. Looking
    each spelling up by equality keeps the lookup on an index."""
    key = phone_key(number)
    if not key:
        return ()
    forms = [number.strip(), key]
    if len(key) == 11 and key[0] == "1":  # a mainland mobile number
        a, b, c = key[:3], key[3:7], key[7:]
        forms += [f"+86{key}", f"86{key}", f"0086{key}", f"0{key}", f"+86 {key}", f"+86-{key}"]
        forms += [f"{a} {b} {c}", f"{a}-{b}-{c}", f"+86 {a} {b} {c}", f"+86-{a}-{b}-{c}"]
    elif key[0] == "0" and key[1:2] not in ("", "0") and 10 <= len(key) <= 12:  # area code + local number
        area = key[:3] if key[1] in "12" else key[:4]  # 010, 020-029; else 0xxx
        local, national = key[len(area) :], key[1:]
        forms += [f"{area}-{local}", f"{area} {local}", f"({area}){local}", f"({area}) {local}"]
        forms += [f"+86{national}", f"86{national}", f"0086{national}", f"+86 {area[1:]} {local}"]
        forms += [f"+86-{area[1:]}-{local}"]
    elif len(key) == 10 and key[:3] in ("400", "800"):  # national service numbers
        forms += [f"{key[:3]}-{key[3:6]}-{key[6:]}", f"{key[:3]} {key[3:6]} {key[6:]}"]
    return tuple(dict.fromkeys(form for form in forms if form))


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
    # the same number written another way (138-0013-8000 / 13800138000) is not a change to the record
    same_number = not created and phone_key(phone) == customer.phone_key
    given = ({} if same_number else {"phone": phone}) | dict(values)
    for field, value in given.items():
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


def customer_history(session: Session, customer_id: int, limit: int = 200) -> list[CustomerChange]:
    """The changes to one customer's record, newest first."""
    return list(
        session.scalars(
            select(CustomerChange)
            .where(CustomerChange.customer_id == customer_id)
            .order_by(CustomerChange.changed_at.desc(), CustomerChange.id.desc())
            .limit(limit)
        )
    )


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_NUMBER_QUERY = re.compile(r"[\d\s+\-().]+")


def _next_prefix(digits: str) -> str | None:
    """The smallest digit string after every string starting with ``digits`` ("138" -> "139", "1399" -> "14"),
    so a prefix is a range an index serves in any collation (digits sort alike in all of them); None: no end."""
    stripped = digits.rstrip("9")
    if not stripped:
        return None
    return stripped[:-1] + str(int(stripped[-1]) + 1)


def search_customers(
    session: Session, query: str = "", *, limit: int = 50, before_id: int | None = None, whole_numbers: bool = False
) -> list[Customer]:
    """Customers, newest first, ``limit`` of them with ids below ``before_id`` (keyset paging).

    A query that is a number (three or more digits, phone punctuation only) matches the start of the phone key
    through its index, or with ``whole_numbers`` only the whole number (for people who see numbers masked: a
    prefix search would let them read a number digit by digit). Any other text matches part of the name or
    company (a scan, stopped as soon as the page is full)."""
    statement = select(Customer).order_by(Customer.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(Customer.id < before_id)
    text = query.strip()
    key = phone_key(text)
    if len(key) >= 3 and _NUMBER_QUERY.fullmatch(text):
        if whole_numbers:
            return list(session.scalars(statement.where(Customer.phone_key == key)))
        statement = statement.where(Customer.phone_key >= key)
        upper = _next_prefix(key)
        if upper is not None:
            statement = statement.where(Customer.phone_key < upper)
    elif text:
        pattern = f"%{_like_escaped(text)}%"
        statement = statement.where(
            or_(Customer.name.like(pattern, escape="\\"), Customer.company.like(pattern, escape="\\"))
        )
    return list(session.scalars(statement))
