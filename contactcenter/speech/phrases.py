"""Finding service-script phrases in recognised Mandarin: exact, or fuzzy by pinyin.

Vosk writes Chinese as space-separated words and often picks a homophone (来店 for 来电, 青楚 for 清楚), so
text is normalised (spaces and punctuation dropped, configured variants such as 你好 → 您好 folded) and may
be compared syllable by syllable in toneless pinyin, allowing a small edit budget that grows with the
phrase's length. Negators (不, 没, 别, 非, 无 by default) are anchors: they match only themselves and can be
neither inserted nor dropped, so 我知道了 never matches 我不知道 and 我有办法 never matches 我没办法
(../shared/reference/VOSK_FINDINGS.md §4b measures why).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast

from pypinyin import Style, lazy_pinyin

MatchMode = Literal["exact", "pinyin"]
Strictness = Literal["strict", "normal", "loose"]
DEFAULT_NEGATORS = frozenset("不没别非无")
_INFINITE = 1 << 20


def _is_kept(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in ("L", "N")  # letters (incl. Han) and digits; spaces and punctuation go


@dataclass(frozen=True)
class NormalisedText:
    """Text with spaces and punctuation removed; ``positions[i]`` is where ``text[i]`` stood originally."""

    text: str
    positions: tuple[int, ...]


def normalise(text: str, variants: Mapping[str, str] | None = None) -> NormalisedText:
    """Drop spaces and punctuation, fold full-width forms and case, and replace variants by their canonical
    form (same length required, so positions stay exact)."""
    kept = [(i, unicodedata.normalize("NFKC", c).lower()) for i, c in enumerate(text) if _is_kept(c)]
    chars = "".join(c for _, c in kept)
    positions = [i for i, _ in kept]
    for variant, canonical in (variants or {}).items():
        chars = chars.replace(variant, canonical)
    return NormalisedText(chars, tuple(positions))


def _one_entry_per_char(run: str) -> list[str]:
    return list(run)


# pypinyin's stubs type an errors callback as returning str, but its converter takes a list too, one entry per
# character (DefaultConverter.handle_nopinyin); a str would make the whole run one entry.
_EACH_CHAR_ITSELF = cast(Callable[[str], str], _one_entry_per_char)


@lru_cache(maxsize=65536)
def syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin, one entry per character (non-Han characters stand for themselves)."""
    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=_EACH_CHAR_ITSELF))


def edit_budget(length: int, strictness: Strictness = "normal") -> int:
    """Edits allowed for a phrase of ``length`` syllables: 0 up to 2, 1 up to 5, 2 beyond ("normal")."""
    if strictness == "strict":
        return 0
    base = 0 if length <= 2 else 1 if length <= 5 else 2
    return base + (1 if strictness == "loose" and length > 2 else 0)


@dataclass(frozen=True)
class PhraseMatch:
    """Where a phrase was found: character span in the original text, and the edits it took."""

    phrase: str
    start: int
    end: int  # exclusive
    distance: int
    matched_text: str


class PhraseMatcher:
    """Finds any of a fixed set of phrases in text. Build once per rule; ``find`` is the hot call."""

    def __init__(
        self,
        phrases: Iterable[str],
        mode: MatchMode = "pinyin",
        strictness: Strictness = "normal",
        variants: Mapping[str, str] | None = None,
        negators: Iterable[str] = DEFAULT_NEGATORS,
    ) -> None:
        self.mode = mode
        self.strictness = strictness
        self.variants = dict(variants or {})
        for variant, canonical in self.variants.items():
            if len(variant) != len(canonical):
                raise ValueError(f"variant {variant!r} and {canonical!r} must have the same length")
        self.negators = frozenset(negators)
        self.phrases: list[tuple[str, str, tuple[str, ...]]] = []
        for phrase in phrases:
            canonical = normalise(phrase, self.variants).text
            if not canonical:
                raise ValueError(f"phrase {phrase!r} has no letters or characters to match")
            self.phrases.append((phrase, canonical, syllables(canonical)))

    def find(self, text: str) -> list[PhraseMatch]:
        """Every phrase found in ``text`` (the best place for each, none inside a longer one found), in
        order of position."""
        normal = normalise(text, self.variants)
        if not normal.text:
            return []
        found = []
        text_syllables = syllables(normal.text) if self.mode == "pinyin" else ()
        text_syllable_set = frozenset(text_syllables)
        for phrase, canonical, phrase_syllables in self.phrases:
            span = self._exact(normal.text, canonical)
            # one syllable has too many homophones (喂 wei / 为 wei): single characters match exactly
            if span is None and self.mode == "pinyin" and len(canonical) > 1:
                span = self._fuzzy(normal.text, text_syllables, text_syllable_set, canonical, phrase_syllables)
            if span is not None:
                start, end, distance = span
                first, last = normal.positions[start], normal.positions[end - 1] + 1
                found.append(PhraseMatch(phrase, first, last, distance, text[first:last]))
        # a phrase inside a longer one found at the same place (不知道 in 我不知道) is the same finding
        kept = [
            m
            for m in found
            if not any(
                o is not m and o.start <= m.start and m.end <= o.end and (o.end - o.start) > (m.end - m.start)
                for o in found
            )
        ]
        return sorted(kept, key=lambda m: (m.start, m.end))

    @staticmethod
    def _exact(text: str, canonical: str) -> tuple[int, int, int] | None:
        index = text.find(canonical)
        return None if index < 0 else (index, index + len(canonical), 0)

    def _fuzzy(
        self, text: str, text_syl: Sequence[str], text_syl_set: frozenset[str], phrase: str, phrase_syl: Sequence[str]
    ) -> tuple[int, int, int] | None:
        """Best approximate occurrence of ``phrase`` in ``text`` (semi-global edit distance on syllables)."""
        budget = edit_budget(len(phrase), self.strictness)
        m, n = len(phrase), len(text)
        negators = self.negators
        # cheap necessary conditions first: every negator of the phrase is in the text, and all but
        # ``budget`` of the phrase's distinct syllables occur in it
        if any(c in negators and c not in text for c in phrase):
            return None
        if len(set(phrase_syl) - text_syl_set) > budget:
            return None

        def substitution(i: int, j: int) -> int:
            a, b = phrase[i], text[j]
            if a in negators or b in negators:
                return 0 if a == b else _INFINITE
            return 0 if phrase_syl[i] == text_syl[j] else 1

        # previous[j]: cost of matching phrase[:i] ending at text[:j]; start[j]: where that alignment began
        previous = [0] * (n + 1)
        start = list(range(n + 1))
        for i in range(m):
            skip_phrase = _INFINITE if phrase[i] in negators else 1
            current = [previous[0] + skip_phrase] + [0] * n
            current_start = [0] * (n + 1)
            for j in range(1, n + 1):
                skip_text = _INFINITE if text[j - 1] in negators else 1
                options = (
                    (previous[j - 1] + substitution(i, j - 1), start[j - 1]),
                    (previous[j] + skip_phrase, start[j]),
                    (current[j - 1] + skip_text, current_start[j - 1]),
                )
                current[j], current_start[j] = min(options)
            previous, start = current, current_start
        best = min(range(1, n + 1), key=lambda j: (previous[j], -(j - start[j])), default=None)
        if best is None or previous[best] > budget or best <= start[best]:
            return None
        return start[best], best, previous[best]


def split_phrase_list(text: str) -> list[str]:
    """Phrases from a list file: one per line, ``#`` starts a comment, blank lines ignored."""
    return [line for line in (re.sub(r"#.*", "", raw).strip() for raw in text.splitlines()) if line]
