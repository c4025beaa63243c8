"""One key per telephone number, so a customer is found however the number was written.

The same mainland number reaches the desk and the customer table in many spellings: ``+86 138 0013 8000``
from a SIP From header, ``138-0013-8000`` typed by an agent, ``008613800138000`` from an import,
``013800138000`` dialled with a trunk prefix. :func:`phone_key` reduces each to the digits a person would
dial at home (``13800138000``; landlines keep their area code, ``01012345678``). Written by hand because no
maintained library does only this: ``phonenumbers`` would need a region guess for every bare number and
rejects the short internal extensions a PBX shows.
"""

from __future__ import annotations

import re

_NOT_DIGITS = re.compile(r"\D+")
KEY_LENGTH = 32  # customers.phone_key


def phone_key(number: str) -> str:
    """The lookup key of ``number``: its digits without the +86 / 0086 country code or a trunk 0 before a
    mobile number. "" when it has no digits."""
    digits = _NOT_DIGITS.sub("", number or "")
    if digits.startswith("0086") and len(digits) > 4:
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13 and digits[2] == "1":
        digits = digits[2:]
    if len(digits) == 12 and digits.startswith("01") and digits[2] in "3456789":
        digits = digits[1:]  # 0 + mobile (trunk prefix); 010… is Beijing's area code and stays
    return digits[:KEY_LENGTH]
