"""Precision per phrase (issue 18, item 3): tables of hits and near-misses for every phrase of the script.

Hits are each phrase as a recogniser writes it: generated with pypinyin, one syllable at a time, as a homophone
(same tone, then another tone), and as each of the recogniser's confusions it has (zh/z, ch/c, sh/s, l/n,
in/ing, en/eng); two errors at once for longer phrases; always in Vosk's spaced words inside a sentence; plus
tests/data/phrase_tables/hits.tsv (words added or dropped). Negators and one-character phrases are not
substituted: they match only themselves by design.

Near-misses are real different words one edit away: generated from pypinyin's phrase dictionary (a two-character
word of the phrase replaced by another word of the dictionary that differs in one syllable of a different
sound), plus tests/data/phrase_tables/near_misses.tsv (picked by hand: negators, the phrase's ends, syllables
missing). Each row is checked to be one edit away, so the table cannot drift into sound-alikes.

Each phrase is matched on its own with a rule's defaults (pinyin, strictness normal, min_edit_length 3).
``.venv/bin/python -m tests.test_phrase_precision`` prints both tables, each row with whether it matched.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from pypinyin import Style, lazy_pinyin
from pypinyin.contrib.tone_convert import to_normal, to_tone3
from pypinyin.phrases_dict import phrases_dict
from pypinyin.pinyin_dict import pinyin_dict

from contactcenter.settings import SettingsError
from contactcenter.speech.phrases import (
    DEFAULT_MIN_EDIT_LENGTH,
    DEFAULT_NEGATORS,
    PhraseMatcher,
    PhraseSetting,
    sound_keys,
    split_phrase_list,
    syllables,
)
from contactcenter.speech.rules import RuleSpec, load_rules
from tests.helpers.paths import REPO

SCRIPTS = REPO / "scripts_zh"
TABLES = Path(__file__).parent / "data" / "phrase_tables"
COMPANY = "示例科技"
MIN_ROWS = 100
MIN_RECALL = 0.98
# one edit of each kind per position; a sentence around the phrase, as an utterance has
CARRIERS = (("", ""), ("那么 ", ""), ("", " 吧"), ("好 那么 ", " 吧"))
SWAPS = {"zh/z": ("z", "zh"), "ch/c": ("c", "ch"), "sh/s": ("s", "sh"), "l/n": ("l", "n")}
FINAL_SWAPS = {"in/ing": ("in", "ing"), "en/eng": ("en", "eng")}


class Row(NamedTuple):
    phrase: str
    text: str
    kind: str


# ---------------------------------------------------------------------------------------------- the phrases


@cache
def script_phrases() -> tuple[str, ...]:
    """The banned list, the required phrases of rules.toml, and the clauses of the service script's lines."""
    banned = split_phrase_list((SCRIPTS / "banned_phrases.txt").read_text(encoding="utf-8"))
    rules = tomllib.loads((SCRIPTS / "rules.toml").read_text(encoding="utf-8"))["rules"]
    required = [
        PhraseSetting.parse(phrase).text.replace("{company}", COMPANY)
        for rule in rules
        if rule.get("kind", "phrase") == "phrase" and not rule.get("negate")
        for phrase in rule.get("phrases", [])
    ]
    script = tomllib.loads((SCRIPTS / "service_script.toml").read_text(encoding="utf-8"))
    clauses = [
        clause.strip()
        for line in [*script["lines"].values(), *script["instead"].values()]
        for clause in re.split(r"[,，。?？;；!！:：、]", line)
        if clause.strip() and "{" not in clause and not re.search(r"\d", clause)
    ]
    return tuple(dict.fromkeys([*banned, *required, *clauses]))


# --------------------------------------------------------------------------------------------------- hits


@cache
def _common_chars() -> dict[str, list[tuple[str, str]]]:
    """Toneless syllable → (character, tone) of the common characters with only that sound, most common first
    (how many words of pypinyin's phrase dictionary use a character stands in for its frequency)."""
    uses = Counter(char for word in phrases_dict for char in word)
    by_sound: dict[str, list[tuple[str, str]]] = {}
    for code, readings in pinyin_dict.items():
        char, sounds = chr(code), readings.split(",")
        if uses[char] >= 20 and char not in DEFAULT_NEGATORS and len({to_normal(r) for r in sounds}) == 1:
            by_sound.setdefault(to_normal(sounds[0]), []).append(
                (char, to_tone3(sounds[0], neutral_tone_with_five=True)[-1:])
            )
    for chars in by_sound.values():
        chars.sort(key=lambda pair: (-uses[pair[0]], pair[0]))
    return by_sound


def _partners(syllable: str) -> Iterator[tuple[str, str]]:
    """(confusion, syllable) for each of the recogniser's confusions that changes ``syllable``."""
    for name, (one, other) in SWAPS.items():  # z → zh and back, l → n and back
        if syllable.startswith(other) and len(syllable) > len(other):
            yield name, one + syllable[len(other) :]
        elif syllable.startswith(one) and not syllable.startswith(one + "h") and len(syllable) > len(one):
            yield name, other + syllable[len(one) :]
    for name, (front, back) in FINAL_SWAPS.items():
        if syllable.endswith(back):
            yield name, syllable[: -len(back)] + front
        elif syllable.endswith(front):
            yield name, syllable + "g"


def _spaced(text: str, offset: int) -> str:
    """Vosk's way of writing Chinese: words of one or two characters with spaces between."""
    words, i = [], 0
    while i < len(text):
        size = 1 if (i + offset) % 3 == 2 else 2
        words.append(text[i : i + size])
        i += size
    return " ".join(words)


def _substitutions(phrase: str) -> list[tuple[int, str, str]]:
    """(position, character, kind) of every recogniser-style substitute for each syllable of ``phrase``."""
    pool = _common_chars()
    tones = lazy_pinyin(phrase, style=Style.TONE3, neutral_tone_with_five=True)
    found = []
    for k, (char, syllable) in enumerate(zip(phrase, syllables(phrase), strict=True)):
        if char in DEFAULT_NEGATORS or syllable == char:
            continue
        tone = tones[k][-1:]
        others = [(c, t) for c, t in pool.get(syllable, []) if c != char]
        same = next((c for c, t in others if t == tone), None)
        other = next((c for c, t in others if t != tone), None)
        if same:
            found.append((k, same, "homophone"))
        if other:
            found.append((k, other, "tone"))
        for name, partner in _partners(syllable):
            swapped = next((c for c, _ in pool.get(partner, [])), None)
            if swapped:
                found.append((k, swapped, name))
    return found


def _read(name: str) -> list[Row]:
    rows = []
    for line in (TABLES / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            phrase, text, kind = line.split("\t")
            rows.append(Row(phrase, text, f"by hand: {kind}"))
    return rows


@cache
def hit_table() -> tuple[Row, ...]:
    rows = []
    for phrase in script_phrases():
        if len(phrase) < 2:
            continue
        subs = _substitutions(phrase)
        for n, (k, char, kind) in enumerate(subs):
            before, after = CARRIERS[n % len(CARRIERS)]
            said = phrase[:k] + char + phrase[k + 1 :]
            rows.append(Row(phrase, before + _spaced(said, n) + after, kind))
        # two errors at once, far enough apart, for phrases of four syllables or more
        pairs = [(a, b) for a in subs for b in subs if b[0] >= a[0] + 2 and a[2] != b[2]]
        for n, ((k1, c1, kind1), (k2, c2, kind2)) in enumerate(pairs[:3] if len(phrase) >= 4 else []):
            said = phrase[:k1] + c1 + phrase[k1 + 1 : k2] + c2 + phrase[k2 + 1 :]
            rows.append(Row(phrase, _spaced(said, n + 1), f"{kind1} + {kind2}"))
    return tuple(rows + _read("hits.tsv"))


# -------------------------------------------------------------------------------------------- near-misses


@cache
def near_miss_table() -> tuple[Row, ...]:
    uses = Counter(char for word in phrases_dict for char in word)
    words = [word for word in phrases_dict if len(word) == 2]
    rows = []
    for phrase in script_phrases():
        for k in range(len(phrase) - 1):
            word = phrase[k : k + 2]
            if word not in phrases_dict:
                continue
            for changed in (0, 1):
                kept = 1 - changed
                others = sorted(
                    (
                        w
                        for w in words
                        if w[kept] == word[kept]
                        and w[changed] != word[changed]
                        and w[changed] not in DEFAULT_NEGATORS
                        and sound_keys(w)[changed] != sound_keys(word)[changed]
                    ),
                    key=lambda w: (-uses[w[changed]], w),
                )
                rows += [Row(phrase, phrase[:k] + w + phrase[k + 2 :], f"{word} → {w}") for w in others[:2]]
    return tuple(dict.fromkeys(rows + _read("near_misses.tsv")))


# -------------------------------------------------------------------------------------------------- tests


@cache
def _matcher(phrase: str) -> PhraseMatcher:
    return PhraseMatcher([phrase])


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_the_tables_are_large_and_cover_the_rules() -> None:
    hits, misses = hit_table(), near_miss_table()
    assert len(hits) >= MIN_ROWS and len(misses) >= MIN_ROWS
    banned = split_phrase_list((SCRIPTS / "banned_phrases.txt").read_text(encoding="utf-8"))
    rules = load_rules(SCRIPTS / "rules.toml", [COMPANY])
    required = [p.replace("{company}", COMPANY) for r in rules.phrase_rules() if not r.spec.negate for p in r.phrases]
    for phrase in [*banned, *required]:
        assert any(row.phrase == phrase for row in misses), f"no near-miss for {phrase}"
        assert len(phrase) == 1 or any(row.phrase == phrase for row in hits), f"no hit for {phrase}"


def test_every_near_miss_is_a_different_word_one_edit_away() -> None:
    """Keeps the table honest: a sound-alike would be a hit, two edits would be no near-miss."""
    wrong = []
    for row in near_miss_table():
        [verdict] = _matcher(row.phrase).explain(row.text)
        edits = [s for s in verdict.steps if s.kind in ("changed", "missing", "inserted")]
        negator = any(s.kind != "same" and s.phrase_char in DEFAULT_NEGATORS for s in verdict.steps)
        homophone = len(row.phrase) == 1 and verdict.edits == 0
        if not (len(edits) == 1 or negator or homophone):
            wrong.append(f"{row.phrase} / {row.text}: {[s.describe() for s in verdict.steps if s.kind != 'same']}")
    assert wrong == []


def test_no_near_miss_matches(record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture[str]) -> None:
    rows = near_miss_table()
    false_alarms = [f"{row.phrase} ← {row.text} ({row.kind})" for row in rows if _matcher(row.phrase).find(row.text)]
    record_property("near_misses", len(rows))
    record_property("false_alarms", len(false_alarms))
    _report(capsys, f"near-miss table: {len(rows)} rows, {len(false_alarms)} false alarms")
    assert false_alarms == []


def test_the_hits_keep_their_recall(record_property: pytest.RecordProperty, capsys: pytest.CaptureFixture[str]) -> None:
    rows = hit_table()
    missed = [f"{row.phrase} ← {row.text} ({row.kind})" for row in rows if not _matcher(row.phrase).find(row.text)]
    recall = 1 - len(missed) / len(rows)
    kinds = Counter(re.split(r" \+ |:", row.kind)[0] for row in rows)
    record_property("hits", len(rows))
    record_property("recall", round(recall, 4))
    _report(
        capsys,
        f"hit table: {len(rows)} rows ({', '.join(f'{k} {n}' for k, n in kinds.most_common())}), "
        f"recall {recall:.1%}, missed: {'; '.join(missed) or 'none'}",
    )
    assert recall >= MIN_RECALL, missed


# ------------------------------------------------------------------------------------- guards and settings


@pytest.mark.parametrize(
    ("phrase", "text", "guard"),
    [
        ("不清楚", "这个 不清洁", "last syllable: 楚 chu heard as 洁 jie"),
        ("我不知道", "我 知道 了", "negator: 不 bu missing"),
        ("我不知道", "我 部 知道", "negator: 不 bu heard as 部 bu"),
        ("我没办法", "我 没 想法", "different syllable: 办 ban heard as 想 xiang"),
        ("这不可能", "这 不能", "missing: 可 ke missing"),
        ("麻烦您等一下", "麻烦 您 看 一下", "different syllable: 等 deng heard as 看 kan"),
        ("您好", "您 早", "edits: 1, none allowed under 3 syllables (min_edit_length)"),
        ("喂", "为 您 服务", "a one-character phrase: only the characters themselves"),
    ],
)
def test_explain_names_the_guard_that_refused(phrase: str, text: str, guard: str) -> None:
    [verdict] = PhraseMatcher([phrase]).explain(text)
    assert verdict.match is None and any(reason.startswith(guard) for reason in verdict.refused), verdict.refused


def test_explain_shows_how_a_match_was_heard() -> None:
    [verdict] = PhraseMatcher(["我没办法"]).explain("我 真 没 半 法")
    assert verdict.match is not None and verdict.edits == 1 and verdict.level == "pinyin with edits"
    assert verdict.phrase_pinyin == "wo mei ban fa" and verdict.text_pinyin == "wo zhen mei ban fa"
    assert [s.describe() for s in verdict.steps if s.kind != "same"] == ["真 zhen inserted", "办 ban heard as 半 ban"]


def test_the_recognisers_confusions_are_the_same_sound() -> None:
    matcher = PhraseMatcher(["我不知道", "请您稍等", "这不可能"], strictness="strict")
    # zhi/zi, shao/sao, qing/qin, neng/leng (two at once), zhe/ze
    for text in ("我 不 资 道", "请 您 扫 等", "亲 您 稍 等", "这 不 可 冷", "则 不 可 能"):
        assert matcher.find(text), text


def test_settings_in_brackets_apply_to_one_phrase() -> None:
    matcher = PhraseMatcher(["不清楚 [exact]", "我没办法 [strict]", "感谢来电"])
    assert [m.phrase for m in matcher.find("不 清楚")] == ["不清楚"]
    assert matcher.find("不 青 楚") == [] and matcher.find("我 真 没 办法") == []
    assert [m.phrase for m in matcher.find("我 没 半 法")] == ["我没办法"]
    assert PhraseMatcher(["感谢您的来电 [loose]"]).find("感谢 您 来 电 话 了") != []
    assert PhraseMatcher(["喂 [pinyin]"], mode="exact").find("为") == []  # one character: itself only
    assert PhraseMatcher(["不清楚 [pinyin]"], mode="exact").find("不 青 楚") != []
    assert PhraseSetting.parse("  不清楚  [ strict ] ") == PhraseSetting("不清楚", None, "strict")
    for bad in ("不清楚 [stric]", "不清楚 [exact, loose]"):
        with pytest.raises(ValueError, match="不清楚"):
            PhraseMatcher([bad])


def test_min_edit_length_is_a_rule_setting(tmp_path: Path) -> None:
    assert RuleSpec.model_fields["min_edit_length"].default == DEFAULT_MIN_EDIT_LENGTH
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nid = "banned"\nnegate = true\nmin_edit_length = 5\nphrases = ["我没办法", "不清楚 [loose]"]\n',
        encoding="utf-8",
    )
    [rule] = load_rules(path, [COMPANY]).rules
    assert rule.phrase_matcher.find("我 真 没 办法") == [] and rule.phrase_matcher.find("我 没 半 法")
    path.write_text('[[rules]]\nid = "banned"\nphrases = ["不清楚 [sloppy]"]\n', encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_rules(path, [COMPANY])
    assert caught.value.problems == [
        f"{path}: rule 'banned': phrase '不清楚 [sloppy]': 'sloppy' in brackets is not a setting "
        "(expected exact, pinyin, strict, normal or loose)"
    ]


def test_rules_test_says_why(desk: Path) -> None:
    from click.testing import CliRunner

    from contactcenter.cli import cli

    tried = CliRunner().invoke(cli, ["--settings", str(desk), "rules", "test", "--why", "这个 不清洁", "我 不 青 楚"])
    assert tried.exit_code == 0, tried.output
    assert "banned_phrases (banned): '不清楚' not matched, closest '不清洁'" in tried.stdout
    assert "bu qing chu | heard bu qing jie: 1 edit(s); 楚 chu heard as 洁 jie (pinyin with edits, 1 allowed)" in (
        tried.stdout
    )
    assert "refused: last syllable: 楚 chu heard as 洁 jie (the phrase's ends must be heard)" in tried.stdout
    assert "bu qing chu | heard bu qing chu: 0 edit(s); 清 qing heard as 青 qing" in tried.stdout


if __name__ == "__main__":  # the tables, for a reader
    for name, table in (("hits", hit_table()), ("near-misses", near_miss_table())):
        print(f"# {name}: {len(table)}")
        for row in table:
            verdict = "matched" if _matcher(row.phrase).find(row.text) else "-"
            print("\t".join([*row, verdict]))
    sys.exit(0)
