"""One key per telephone number, so a customer is found however the number was written.

The same mainland number reaches the desk and the customer table in many spellings: ``+86 138 0013 8000``
from a SIP From header, ``138-0013-8000`` typed by an agent, ``008613800138000`` from an import,
``013800138000`` dialled with a trunk prefix. :func:`phone_key` reduces each to the digits a person would
dial at home (``13800138000``; landlines keep their area code, ``01012345678``). Written by hand because no
maintained library does only this: ``phonenumbers`` would need a region guess for every bare number and
rejects the short internal extensions a PBX shows.

The same module masks numbers for the people who may not see them (:func:`mask_numbers` in free text,
:func:`mask_number` for a number field) and checks a number a person types (:func:`phone_problem`); those
two use ``phonenumbers`` (libphonenumber), which knows the numbering plan.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

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


# --------------------------------------------------------------------------------------------- masking

MASK = "*"
KEEP_LAST = 4  # digits left visible at the end of a number in free text: two numbers can still be told apart
KEEP_FIRST = 3  # and at the start of a number field: 138****8000
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# 18 characters, grouped 6-8-4 by a space or hyphen or not at all, not inside a longer run of digits
_RESIDENT_ID = re.compile(r"(?<!\d)(\d{6})[ \-]?(\d{8})[ \-]?(\d{3}[\dXx])(?![\dA-Za-z])")
# A mainland mobile however it is glued to the words around it ("tel13800138000"), or with a prefix the
# metadata of this phonenumbers release does not know yet.
_MOBILE = re.compile(r"(?<!\d)1[3-9]\d(?:[ \-]?\d{4}){2}(?!\d)")


def resident_id_valid(text: str) -> bool:
    """Whether ``text`` is an 18-character resident ID number whose GB 11643-1999 check character (the
    last, 0-9 or X) matches the first 17 digits."""
    text = unicodedata.normalize("NFKC", text).strip().upper()
    if len(text) != 18 or not text[:17].isascii() or not text[:17].isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17]


def _plain(text: str) -> str:
    """``text`` with full-width digits, letters and brackets as ASCII, character for character, so that a
    position in it is the same position in ``text``."""
    out = []
    for char in text:
        folded = unicodedata.normalize("NFKC", char)
        out.append(folded if len(folded) == 1 else char)
    return "".join(out)


def _number_spans(text: str) -> list[tuple[int, int]]:
    plain = _plain(text)
    spans = [m.span() for m in _RESIDENT_ID.finditer(plain) if resident_id_valid("".join(m.groups()))]
    spans += [(m.start, m.end) for m in PhoneNumberMatcher(plain, "CN", leniency=Leniency.VALID)]
    spans += [m.span() for m in _MOBILE.finditer(plain)]
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            kept[-1] = (kept[-1][0], max(end, kept[-1][1]))  # overlapping finds are one number
        else:
            kept.append((start, end))
    return kept


def mask_numbers(text: str) -> str:
    """``text`` with every phone number and resident ID number in it masked but its last four digits,
    however it is written: 138-0013-8000, (010) 1234 5678, +86 138 0013 8000, full-width digits, glued to
    Chinese words ("电话13800138000谢谢"). Separators and the text around stay as typed, so a reviewer still
    reads the sentence.

    Phone numbers are what libphonenumber's matcher finds for region CN at leniency VALID: a number that
    exists in the numbering plan, so dates (2026-11-30), times, amounts (1380.00) and order numbers are
    left alone, where POSSIBLE would mask any five digits. Mainland mobiles are also found by their shape,
    because the matcher skips a number glued to Latin letters and a new prefix can be missing from its
    metadata. An ID number is masked only with a valid check character: any 18 digits would take the order
    and tracking numbers with them (the console's free text is also run through the spoken-numeral masking,
    which hides any long run of digits anyway)."""
    if not text:
        return text
    spans = _number_spans(text)
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        digits = [i for i in range(start, end) if _plain(chars[i]).isdigit() or chars[i] in "Xx"]
        for i in digits[:-KEEP_LAST]:
            chars[i] = MASK
    return "".join(chars)


def remove_number(text: str, key: str, marker: str) -> str:
    """``text`` with every spelling of the one number whose :func:`phone_key` is ``key`` replaced by
    ``marker`` (an erasure request); other numbers, and the words around, stay as written."""
    if not text or not key:
        return text
    plain = _plain(text)
    spans = [(s, e) for s, e in _number_spans(text) if phone_key(plain[s:e]) == key]
    spans += [m.span() for m in re.finditer(rf"(?<!\d){re.escape(key)}(?!\d)", plain)]  # an extension, say
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            continue
        out += [text[last:start], marker]
        last = end
    return "".join(out) + text[last:]


def mask_number(number: str) -> str:
    """A number field as roles that may not see numbers get it: 138****8000, 010-****5678, +86 138 **** 8000.
    The country code and the first three digits of the number stay, the last four, nothing else; a number of
    fewer than seven digits (an extension, a service number) is masked whole."""
    number = (number or "").strip()
    digits = [i for i, char in enumerate(number) if _plain(char).isdigit()]
    key_length = len(phone_key(_plain(number)))
    if key_length < 7 or key_length > len(digits):
        return "".join(MASK if i in digits else char for i, char in enumerate(number))
    national = digits[len(digits) - key_length :]
    hidden = set(national[KEEP_FIRST:-KEEP_LAST])
    return "".join(MASK if i in hidden else char for i, char in enumerate(number))


# ------------------------------------------------------------------------------------------ validation

SHORT_DIGITS = (3, 8)  # extensions (1001), service numbers (110, 10086, 95588, 95105588) and local numbers
MAX_DIGITS = 20  # E.164 allows 15; with 0086 and a trunk 0 typed in, more is not a number
_PHONE_CHARACTERS = re.compile(r"[0-9+\-().\s]")


@dataclass(frozen=True)
class PhoneProblem:
    """Why a typed number is refused, as one line in Chinese (the console, the import) and in English (the
    command line)."""

    zh: str
    en: str


def phone_problem(number: str) -> PhoneProblem | None:
    """Why ``number`` (as a person typed it) cannot be stored as a phone number, or None.

    Accepted: whatever libphonenumber holds valid for region CN (mobiles, landlines with their area code,
    400/800 numbers, +86 and 0086 forms, foreign numbers after a +), and, without a leading 0 or +, three
    to eight digits: the extensions, service numbers (95588, 10086) and local numbers a PBX dials, which
    libphonenumber does not know. Full-width digits are read as digits."""
    text = unicodedata.normalize("NFKC", number or "").strip()
    if not text:
        return PhoneProblem("电话为空", "the phone number is empty")
    bad = next((char for char in text if not _PHONE_CHARACTERS.fullmatch(char)), None)
    if bad is not None or "+" in text[1:]:
        bad = bad if bad is not None else "+"
        return PhoneProblem(
            f"电话含有不允许的字符“{bad}”(只能有数字、空格和 + - ( ) .)",
            f"{text[:40]!r} is not a phone number: it has {bad!r} (only digits, spaces and + - ( ) . are allowed)",
        )
    digits = _NOT_DIGITS.sub("", text)
    if not digits:
        return PhoneProblem("电话里没有数字", f"{text[:40]!r} is not a phone number: it has no digits")
    if len(digits) > MAX_DIGITS or len(text) > KEY_LENGTH:
        return PhoneProblem(
            f"电话过长({len(digits)} 位数字;最多 {MAX_DIGITS} 位数字、{KEY_LENGTH} 个字符)",
            f"{text[:40]!r} is not a phone number: {len(digits)} digits is too long",
        )
    if not text.startswith("+") and digits[0] != "0" and SHORT_DIGITS[0] <= len(digits) <= SHORT_DIGITS[1]:
        return None
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_valid_number(parsed):
        return None
    return PhoneProblem(
        "不是有效的电话号码(手机 11 位;座机请带区号,如 010-12345678;分机或服务号 3 到 8 位)",
        f"{text[:40]!r} is not a valid phone number (a mobile, a landline with its area code, +86…, "
        "or an extension or service number of 3 to 8 digits)",
    )


def clean_phone(number: str) -> str:
    """``number`` as it is stored once :func:`phone_problem` has passed it: full-width characters as ASCII,
    without the spaces around it."""
    return unicodedata.normalize("NFKC", number or "").strip()
