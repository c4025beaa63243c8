"""Masking phone and ID numbers in transcripts (R13), in digits or in spoken Chinese numerals.

Recognised speech writes numbers either way ("13800138000" or "一三八零零一三八零零零"), so any run of seven
or more digits or numeral characters (spaces between them allowed) is masked, keeping the last four so a
reviewer can still tell two numbers apart.
"""

from __future__ import annotations

import re

NUMERALS = "0-9０-９零〇一二三四五六七八九幺两xX"
_RUN = re.compile(rf"[{NUMERALS}](?:\s*[{NUMERALS}]){{6,}}")
MASK = "*"
KEEP_LAST = 4


def _mask(match: re.Match[str]) -> str:
    run = match.group(0)
    positions = [i for i, c in enumerate(run) if not c.isspace()]
    hidden = set(positions[:-KEEP_LAST])
    return "".join(MASK if i in hidden else c for i, c in enumerate(run))


def redact_numbers(text: str) -> str:
    """``text`` with every long number masked but for its last four digits."""
    return _RUN.sub(_mask, text)


_ALL_NUMERALS = re.compile(rf"^[{NUMERALS}]+$")


def redact_word(word: str) -> str:
    """A single recognised word: masked whole if it is a number of three or more digits (a piece of a
    longer number that the text-level masking hides), else masked like text."""
    if len(word) >= 3 and _ALL_NUMERALS.match(word):
        return MASK * len(word)
    return redact_numbers(word)
