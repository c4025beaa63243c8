"""Finding service-script phrases in recognised Mandarin: by the characters, by sound, or by sound with edits.

Vosk writes Chinese as space-separated words and often picks a homophone (来店 for 来电, 青楚 for 清楚), so
text is normalised (spaces and punctuation dropped, configured variants such as 你好 → 您好 folded) and may be
compared syllable by syllable in toneless pinyin. Each phrase is matched at one of three levels:

* ``exact``: the characters themselves.
* ``pinyin`` (strictness "strict"): the same sounds. A homophone, a wrong tone or one of the recogniser's usual
  confusions (zh/z, ch/c, sh/s, l/n, in/ing, en/eng: :data:`CONFUSIONS`) is the same syllable; nothing may be
  added or missing.
* pinyin with edits (strictness "normal" or "loose"): besides, a few syllables may be added inside the phrase
  (people say 我真没办法, recognisers insert short words), and in phrases of :data:`MISSING_FROM` syllables or
  more a few may be missing (感谢您来电). Phrases shorter than ``min_edit_length`` get no edits.

Whatever the level, the guards that keep a near-miss from counting (it is always a different word, which is
what makes a false alarm: 不清洁 is not 不清楚, 我没想法 is not 我没办法):

* A syllable heard as a *different* one is never an edit, however long the phrase: a recogniser's errors are
  sound-alikes, a different syllable is a different word. A syllable missing right beside one added is the
  same thing and is refused too.
* Negators (不, 没, 别, 非, 无 by default) match only themselves and are neither added nor missing, so 我知道了
  never matches 我不知道 (../shared/reference/VOSK_FINDINGS.md §4b measures why).
* The first and last syllables must be heard: an alignment may not start or end on an edit, which would let a
  neighbouring word stand in for the phrase's (感谢您的来信 is not 感谢您的来电).
* A one-character phrase matches only itself: one syllable has too many homophones (喂 wei / 为 wei).

An admin sets the level for a rule with ``match`` and ``strictness`` and for one phrase in brackets after it
(``不清楚 [strict]``, ``喂 [exact]``); :meth:`PhraseMatcher.explain` says why a sentence did or did not match.
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
StepKind = Literal["same", "sound", "changed", "missing", "inserted"]
DEFAULT_NEGATORS = frozenset("不没别非无")
DEFAULT_MIN_EDIT_LENGTH = 3  # syllables: shorter phrases match by sound only
MISSING_FROM = 6  # syllables: shorter phrases may have syllables added inside, never missing
MATCH_MODES: tuple[MatchMode, ...] = ("exact", "pinyin")
STRICTNESSES: tuple[Strictness, ...] = ("strict", "normal", "loose")
# The recogniser's (and southern speakers') usual confusions, each side counted as the same sound: initials
# first, then finals. Sogou and Google pinyin call these "fuzzy pinyin"; these are the ones the issue names.
CONFUSIONS: tuple[tuple[str, str], ...] = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"))
FINAL_CONFUSIONS: tuple[tuple[str, str], ...] = (("ing", "in"), ("eng", "en"))
_INFINITE = 1 << 20
_SETTING = re.compile(r"^(?P<text>.*?)\s*\[(?P<words>[^\[\]]*)\]\s*$", re.DOTALL)


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


def sound_key(syllable: str) -> str:
    """What a toneless syllable sounds like to the matcher: each confusion folded to one side (zhi and zi
    are both ``zi``, ning and lin both ``lin``)."""
    for heard, folded in CONFUSIONS:
        if syllable.startswith(heard) and len(syllable) > len(heard):
            syllable = folded + syllable[len(heard) :]
            break
    for heard, folded in FINAL_CONFUSIONS:
        if syllable.endswith(heard):
            return syllable[: -len(heard)] + folded
    return syllable


@lru_cache(maxsize=65536)
def sound_keys(text: str) -> tuple[str, ...]:
    """:func:`sound_key` of each character of normalised ``text``; a character without pinyin (a digit, a
    Latin letter) is only ever the same as itself."""
    return tuple(sound_key(s) if s != c else f"={c}" for c, s in zip(text, syllables(text), strict=True))


def edit_budget(length: int, strictness: Strictness = "normal", min_length: int = DEFAULT_MIN_EDIT_LENGTH) -> int:
    """Edits allowed for a phrase of ``length`` syllables: none below ``min_length`` (3 unless set), 1 up to 5,
    2 beyond ("normal"); "loose" allows one more, "strict" none."""
    if strictness == "strict" or length < max(min_length, 2):
        return 0
    return (1 if length <= 5 else 2) + (1 if strictness == "loose" else 0)


@dataclass(frozen=True)
class PhraseSetting:
    """A phrase as written with its own settings: ``不清楚 [strict]`` is 不清楚, matched by sound only."""

    text: str
    match: MatchMode | None = None
    strictness: Strictness | None = None

    @classmethod
    def parse(cls, written: str) -> PhraseSetting:
        """Split off the bracketed settings; ValueError (one line) names a word that is not one."""
        found = _SETTING.match(written)
        if found is None:
            return cls(written.strip())
        match: MatchMode | None = None
        strictness: Strictness | None = None
        for word in re.split(r"[\s,，、]+", found.group("words").strip().lower()):
            if word in MATCH_MODES:
                match = cast(MatchMode, word)
            elif word in STRICTNESSES:
                strictness = cast(Strictness, word)
            elif word:
                raise ValueError(
                    f"phrase {written!r}: {word!r} in brackets is not a setting "
                    f"(expected {', '.join(MATCH_MODES + STRICTNESSES[:-1])} or {STRICTNESSES[-1]})"
                )
        if match == "exact" and strictness is not None:
            raise ValueError(f"phrase {written!r}: exact takes no strictness (that is for pinyin)")
        return cls(found.group("text").strip(), match, strictness)


@dataclass(frozen=True)
class Step:
    """One position of an alignment of a phrase with text: a phrase syllable heard as the same character
    (``same``) or the same sound (``sound``), heard as a different syllable (``changed``), not heard
    (``missing``), or a text syllable inside the phrase that the phrase does not have (``inserted``)."""

    kind: StepKind
    phrase_char: str = ""
    phrase_syllable: str = ""
    text_char: str = ""
    text_syllable: str = ""

    def describe(self) -> str:
        phrase, text = f"{self.phrase_char} {self.phrase_syllable}", f"{self.text_char} {self.text_syllable}"
        if self.kind == "missing":
            return f"{phrase} missing"
        if self.kind == "inserted":
            return f"{text} inserted"
        if self.kind == "changed":
            return f"{phrase} heard as {text}"
        return f"{phrase} heard as {text}" if self.kind == "sound" else phrase


@dataclass(frozen=True)
class PhraseMatch:
    """Where a phrase was found: character span in the original text, and the edits it took."""

    phrase: str
    start: int
    end: int  # exclusive
    distance: int
    matched_text: str


@dataclass(frozen=True)
class PhraseVerdict:
    """Why a phrase did or did not match a text (for ``rules test``): its level, and its closest occurrence,
    step by step, with the guards that refused it. ``edits`` is -1 when the text has nothing like it."""

    phrase: str
    level: str
    budget: int
    match: PhraseMatch | None
    matched_text: str
    steps: tuple[Step, ...]
    edits: int
    refused: tuple[str, ...]

    @property
    def phrase_pinyin(self) -> str:
        return " ".join(s.phrase_syllable for s in self.steps if s.kind != "inserted")

    @property
    def text_pinyin(self) -> str:
        return " ".join(s.text_syllable for s in self.steps if s.kind != "missing")


@dataclass(frozen=True)
class _Phrase:
    written: str  # as the rule has it, settings and all
    text: str  # as written, without the settings: what reports show
    canonical: str  # normalised, variants folded: what is compared
    syllables: tuple[str, ...]
    keys: tuple[str, ...]
    match: MatchMode
    strictness: Strictness
    budget: int

    @property
    def level(self) -> str:
        if self.match == "exact" or len(self.canonical) == 1:
            return "exact"
        return "pinyin" if self.budget == 0 else "pinyin with edits"


@dataclass(frozen=True)
class _Policy:
    """What an alignment may do: the matcher's (``guarded``, no changed syllables) or, to explain a miss, the
    closest occurrence whatever it takes."""

    budget: int
    changes: bool  # a syllable heard as a different one, at the cost of an edit
    missing: bool  # phrase syllables not heard, at the cost of an edit each
    guarded: bool  # negators themselves, the ends heard, nothing missing beside something added


@dataclass(frozen=True)
class _Alignment:
    start: int
    end: int  # exclusive, in the normalised text
    edits: int
    steps: tuple[Step, ...]


_HEARD, _INSERTED, _MISSING = 0, 1, 2
_CLOSEST = _Policy(budget=_INFINITE, changes=True, missing=True, guarded=False)


class PhraseMatcher:
    """Finds any of a fixed set of phrases in text. Build once per rule; ``find`` is the hot call."""

    def __init__(
        self,
        phrases: Iterable[str],
        mode: MatchMode = "pinyin",
        strictness: Strictness = "normal",
        variants: Mapping[str, str] | None = None,
        negators: Iterable[str] = DEFAULT_NEGATORS,
        min_edit_length: int = DEFAULT_MIN_EDIT_LENGTH,
    ) -> None:
        self.mode = mode
        self.strictness = strictness
        self.min_edit_length = min_edit_length
        self.variants = dict(variants or {})
        for variant, canonical in self.variants.items():
            if len(variant) != len(canonical):
                raise ValueError(f"variant {variant!r} and {canonical!r} must have the same length")
        self.negators = frozenset(negators)
        self.phrases: list[_Phrase] = []
        for written in phrases:
            setting = PhraseSetting.parse(written)
            canonical = normalise(setting.text, self.variants).text
            if not canonical:
                raise ValueError(f"phrase {written!r} has no letters or characters to match")
            match = setting.match or (mode if setting.strictness is None else "pinyin")
            chosen = setting.strictness or strictness
            budget = 0 if match == "exact" else edit_budget(len(canonical), chosen, min_edit_length)
            self.phrases.append(
                _Phrase(
                    written, setting.text, canonical, syllables(canonical), sound_keys(canonical), match, chosen, budget
                )
            )
        self._by_sound = any(p.match == "pinyin" and len(p.canonical) > 1 for p in self.phrases)

    def find(self, text: str) -> list[PhraseMatch]:
        """Every phrase found in ``text`` (the best place for each, none inside a longer one found), in
        order of position."""
        normal = normalise(text, self.variants)
        if not normal.text:
            return []
        keys = sound_keys(normal.text) if self._by_sound else ()
        key_set = frozenset(keys)
        found = []
        for phrase in self.phrases:
            span = self._find(phrase, normal.text, keys, key_set)
            if span is not None:
                found.append(self._match(phrase, text, normal, span[0], span[1], span[2]))
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

    def explain(self, text: str) -> list[PhraseVerdict]:
        """For every phrase, whether it matched ``text`` and why: the alignment it matched with, or its closest
        occurrence and each guard that refused it. Slower than :meth:`find`; for people trying sentences."""
        normal = normalise(text, self.variants)
        verdicts = []
        keys = sound_keys(normal.text) if normal.text else ()
        for phrase in self.phrases:
            alignment = None
            if normal.text and phrase.level == "exact":
                index = normal.text.find(phrase.canonical)
                if index >= 0:
                    steps = tuple(
                        Step("same", c, s, c, s) for c, s in zip(phrase.canonical, phrase.syllables, strict=True)
                    )
                    alignment = _Alignment(index, index + len(phrase.canonical), 0, steps)
            elif normal.text and self._possible(phrase, normal.text, frozenset(keys)):
                alignment = self._align(phrase, normal.text, keys, self._policy(phrase))
            if alignment is not None:
                match = self._match(phrase, text, normal, alignment.start, alignment.end, alignment.edits)
                verdicts.append(
                    PhraseVerdict(
                        phrase.text,
                        phrase.level,
                        phrase.budget,
                        match,
                        match.matched_text,
                        alignment.steps,
                        alignment.edits,
                        (),
                    )
                )
                continue
            closest = self._align(phrase, normal.text, keys, _CLOSEST) if normal.text else None
            if closest is None:
                verdicts.append(PhraseVerdict(phrase.text, phrase.level, phrase.budget, None, "", (), -1, ()))
                continue
            first, last = normal.positions[closest.start], normal.positions[closest.end - 1] + 1
            verdicts.append(
                PhraseVerdict(
                    phrase.text,
                    phrase.level,
                    phrase.budget,
                    None,
                    text[first:last],
                    closest.steps,
                    closest.edits,
                    self._refusals(phrase, closest),
                )
            )
        return verdicts

    # ------------------------------------------------------------------------------------------- internals

    @staticmethod
    def _match(phrase: _Phrase, text: str, normal: NormalisedText, start: int, end: int, edits: int) -> PhraseMatch:
        first, last = normal.positions[start], normal.positions[end - 1] + 1
        return PhraseMatch(phrase.text, first, last, edits, text[first:last])

    def _find(
        self, phrase: _Phrase, text: str, keys: Sequence[str], key_set: frozenset[str]
    ) -> tuple[int, int, int] | None:
        index = text.find(phrase.canonical)
        if index >= 0:
            return index, index + len(phrase.canonical), 0
        if phrase.level == "exact" or not self._possible(phrase, text, key_set):
            return None
        alignment = self._align(phrase, text, keys, self._policy(phrase))
        return None if alignment is None else (alignment.start, alignment.end, alignment.edits)

    def _policy(self, phrase: _Phrase) -> _Policy:
        return _Policy(phrase.budget, changes=False, missing=len(phrase.canonical) >= MISSING_FROM, guarded=True)

    def _possible(self, phrase: _Phrase, text: str, key_set: frozenset[str]) -> bool:
        """Cheap necessary conditions for a guarded match: the phrase's negators are in the text, its first and
        last sounds too, and every other sound unless syllables may be missing (then all but the budget's)."""
        if any(c in self.negators and c not in text for c in phrase.canonical):
            return False
        if phrase.keys[0] not in key_set or phrase.keys[-1] not in key_set:
            return False
        absent = len(set(phrase.keys) - key_set)
        return absent == 0 or (len(phrase.canonical) >= MISSING_FROM and absent <= phrase.budget)

    def _align(self, phrase: _Phrase, text: str, keys: Sequence[str], policy: _Policy) -> _Alignment | None:
        """The best occurrence of ``phrase`` in ``text`` under ``policy``: a semi-global alignment of syllables
        (the text around it is free) with three states, so that the guards can see what came before."""
        p, pk, m, n = phrase.canonical, phrase.keys, len(phrase.canonical), len(text)
        negators, guarded, budget = self.negators, policy.guarded, policy.budget

        def heard(i: int, j: int) -> int:
            a, b = p[i], text[j]
            if a == b:
                return 0
            negator = a in negators or b in negators
            if pk[i] == keys[j] and not (guarded and negator):
                return 0
            if guarded and (negator or i == 0 or i == m - 1):
                return _INFINITE
            return 1 if policy.changes else _INFINITE

        def inserted(j: int) -> int:
            return _INFINITE if guarded and text[j] in negators else 1

        def missing(i: int) -> int:
            if not policy.missing or (guarded and (p[i] in negators or i == 0 or i == m - 1)):
                return _INFINITE
            return 1

        # cost[i][j][state]: cheapest alignment of p[:i] ending at text[:j] whose last step is ``state``;
        # start[i][j][state]: where in the text it began; back[i][j][state]: the state before (-1: the start)
        none = (_INFINITE, 0, -1)
        table = [[[none, none, none] for _ in range(n + 1)] for _ in range(m + 1)]
        for i in range(1, m + 1):
            row, above = table[i], table[i - 1]
            for j in range(n + 1):
                cell = row[j]
                if j >= 1:
                    cost = heard(i - 1, j - 1)
                    if cost < _INFINITE:
                        if i == 1:
                            cell[_HEARD] = (cost, j - 1, -1)
                        else:
                            cell[_HEARD] = _best(above[j - 1], (_HEARD, _INSERTED, _MISSING), cost, budget)
                    if i < m:
                        cost = inserted(j - 1)
                        if cost < _INFINITE:
                            came = (_HEARD, _INSERTED) if guarded else (_HEARD, _INSERTED, _MISSING)
                            cell[_INSERTED] = _best(row[j - 1], came, cost, budget)
                cost = missing(i - 1)
                if cost < _INFINITE:
                    if i == 1:
                        cell[_MISSING] = (cost, j, -1)
                    else:
                        came = (_HEARD, _MISSING) if guarded else (_HEARD, _INSERTED, _MISSING)
                        cell[_MISSING] = _best(above[j], came, cost, budget)
        ends = (_HEARD,) if guarded else (_HEARD, _MISSING)
        candidates = [
            (table[m][j][s][0], -(j - table[m][j][s][1]), j, s)
            for j in range(1, n + 1)
            for s in ends
            if table[m][j][s][0] <= budget and j > table[m][j][s][1]
        ]
        if not candidates:
            return None
        edits, _, end, state = min(candidates)
        start = table[m][end][state][1]
        steps: list[Step] = []
        i, j = m, end
        while state >= 0:
            previous = table[i][j][state][2]
            if state == _HEARD:
                a, b = p[i - 1], text[j - 1]
                kind: StepKind = "same" if a == b else "sound" if pk[i - 1] == keys[j - 1] else "changed"
                steps.append(Step(kind, a, phrase.syllables[i - 1], b, syllables(text)[j - 1]))
                i, j = i - 1, j - 1
            elif state == _INSERTED:
                steps.append(Step("inserted", text_char=text[j - 1], text_syllable=syllables(text)[j - 1]))
                j -= 1
            else:
                steps.append(Step("missing", p[i - 1], phrase.syllables[i - 1]))
                i -= 1
            state = previous
        return _Alignment(start, end, edits, tuple(reversed(steps)))

    def _refusals(self, phrase: _Phrase, closest: _Alignment) -> tuple[str, ...]:
        """Each guard the closest occurrence breaks, in words an admin can act on."""
        length, steps = len(phrase.canonical), closest.steps
        reasons: list[str] = []
        different = [s for s in steps if s.kind != "same"]
        if phrase.level == "exact" and different:
            why = "a one-character phrase" if length == 1 and phrase.match != "exact" else "exact"
            return (f"{why}: only the characters themselves ({'; '.join(s.describe() for s in different)})",)
        heard_at = [k for k, s in enumerate(steps) if s.kind != "inserted"]
        for k, step in enumerate(steps):
            negator = step.phrase_char in self.negators or step.text_char in self.negators
            if negator and step.kind != "same":
                reasons.append(f"negator: {step.describe()} (a negator must be said as itself)")
            elif step.kind in ("changed", "missing") and k in (heard_at[0], heard_at[-1]):
                end = "first" if k == heard_at[0] else "last"
                reasons.append(f"{end} syllable: {step.describe()} (the phrase's ends must be heard)")
            elif step.kind == "changed":
                reasons.append(f"different syllable: {step.describe()} (a different word, not an edit)")
            elif step.kind == "missing" and length < MISSING_FROM:
                reasons.append(f"missing: {step.describe()} (phrases under {MISSING_FROM} syllables miss nothing)")
            elif step.kind == "missing" and any(
                steps[o].kind == "inserted" for o in (k - 1, k + 1) if 0 <= o < len(steps)
            ):
                reasons.append(f"missing beside inserted: {step.describe()} (that is a different syllable)")
        edits = sum(1 for s in steps if s.kind in ("changed", "missing", "inserted"))
        if edits > phrase.budget:
            if phrase.budget:
                allowed = f"{phrase.budget} allowed"
            elif phrase.strictness == "strict":
                allowed = "none allowed at strictness strict"
            else:
                allowed = f"none allowed under {max(self.min_edit_length, 2)} syllables (min_edit_length)"
            reasons.append(f"edits: {edits}, {allowed}")
        return tuple(reasons) or ("no occurrence within the allowed edits",)


def _best(cell: list[tuple[int, int, int]], came: Sequence[int], cost: int, budget: int) -> tuple[int, int, int]:
    """The cheapest way into a cell from the states ``came`` of the cell before it (ties: the earliest start)."""
    best = (_INFINITE, 0, -1)
    for state in came:
        total, start, _ = cell[state]
        if total + cost <= budget and (total + cost, start) < best[:2]:
            best = (total + cost, start, state)
    return best


def split_phrase_list(text: str) -> list[str]:
    """Phrases from a list file: one per line, ``#`` starts a comment, blank lines ignored."""
    return [line for line in (re.sub(r"#.*", "", raw).strip() for raw in text.splitlines()) if line]
