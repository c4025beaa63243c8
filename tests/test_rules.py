"""Phrase matching and the compliance rules, on text and Vosk-format results (the Mandarin model cannot
be had here; the matching is what is Mandarin-specific)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from contactcenter.records import UtteranceRecord, WordRecord
from contactcenter.settings import SettingsError, load_settings
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.phrases import PhraseMatcher, edit_budget
from contactcenter.speech.rules import Window, load_rules
from tests.helpers.paths import REPO

BANNED = [
    line
    for line in (REPO / "scripts_zh" / "banned_phrases.txt").read_text(encoding="utf-8").splitlines()
    if line and not line.startswith("#")
]


@pytest.fixture(scope="module")
def rules():
    return load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])


# ------------------------------------------------------------------------------------------------ matching

# Simulated Vosk output (space-separated words, homophones, small insertions): must be caught.
BANNED_SAID = [
    "我 不 知道",
    "我 不 只 道",
    "不 青 楚",
    "这个 不 归 我 管",
    "这 不 可能 的",
    "我 真 没 办法",
    "我 没 半 法",
    "你 自己 看 吧",
    "不知道 啊",
    "这个 我 不清楚",
]
# Innocent lines that look like banned phrases: must not be caught (negators are anchors).
INNOCENT = [
    "我 知道 了",
    "这个 我 很 清楚",
    "这 可能 需要 两天",
    "我 有 办法 帮 您",
    "这个 归 我 管",
    "清楚 了",
    "不好意思 请 不要 挂断",
    "您好 示例 科技 很 高兴 为 您 服务",
    "我 帮 您 看看",
]


@pytest.mark.parametrize("text", BANNED_SAID)
def test_banned_phrases_are_found_through_asr_noise(text: str) -> None:
    assert PhraseMatcher(BANNED).find(text), text


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_lines_are_not_banned(text: str) -> None:
    assert PhraseMatcher(BANNED).find(text) == [], text


def test_a_single_character_matches_only_itself() -> None:
    matcher = PhraseMatcher(["喂"])
    assert matcher.find("喂 您好") and not matcher.find("很 高兴 为 您 服务")  # 为 sounds like 喂


def test_exact_mode_needs_the_characters() -> None:
    exact = PhraseMatcher(["我不知道"], mode="exact")
    assert exact.find("我 不 知道") and not exact.find("我 不 只 道")


def test_strictness_changes_the_edit_budget() -> None:
    assert [edit_budget(n) for n in (1, 2, 3, 5, 6)] == [0, 0, 1, 1, 2]
    assert edit_budget(4, "strict") == 0 and edit_budget(4, "loose") == 2
    assert not PhraseMatcher(["感谢您的来电"], strictness="strict").find("感谢 您 来电")
    assert PhraseMatcher(["感谢您的来电"]).find("感谢 您 来电")


def test_variants_fold_before_matching() -> None:
    matcher = PhraseMatcher(["您好"], mode="exact", variants={"你好": "您好"})
    [match] = matcher.find("喂 你 好")
    assert match.matched_text == "你 好" and match.start == 2


def test_match_positions_point_into_the_original_text() -> None:
    [match] = PhraseMatcher(["不清楚"]).find("这个 问题 我 不 清楚 呢")
    assert "这个 问题 我 不 清楚 呢"[match.start : match.end] == "不 清楚"


# ---------------------------------------------------------------------------------------------- rule file


def test_the_default_rules_cover_the_service_standard(rules) -> None:
    ids = {rule.id for rule in rules.rules}
    assert {
        "greeting",
        "greeting_company",
        "late_answer_apology",
        "banned_phrases",
        "hold_request",
        "hold_return",
        "closing",
        "customer_hangs_up_first",
    } <= ids
    banned = next(rule for rule in rules.rules if rule.id == "banned_phrases")
    assert banned.spec.negate and banned.spec.live and banned.matcher.find("我 不 知道")


def test_windows_parse() -> None:
    assert Window.parse("first:10") == Window("first", 10.0)
    assert Window.parse("after:hold_end:15") == Window("after", 15.0, "hold_end")
    with pytest.raises(ValueError, match="unknown event"):
        Window.parse("after:lunch:5")


def test_a_bad_rules_file_is_reported_with_the_rule_and_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nid = "x"\nphrases = ["您好"]\nwindow = "first:ten"\nspeakr = "agent"\n', encoding="utf-8"
    )
    with pytest.raises(SettingsError) as caught:
        load_rules(path, ["示例"])
    text = "\n".join(caught.value.problems)
    assert "rule 'x' window" in text and "first:ten" in text and "rule 'x' speakr: unknown key" in text


def test_settings_point_at_the_rules(desk: Path) -> None:
    settings = load_settings(desk, {})
    assert settings.scripts.rules.name == "rules.toml"
    assert settings.company.names_said == ["示例科技"]


# ------------------------------------------------------------------------------------- compliance on calls


def vosk_utterance(leg: str, result_json: str) -> UtteranceRecord:
    """An utterance from a Vosk final result (``SetWords(True)``), as the recogniser will make it."""
    result = json.loads(result_json)
    words = tuple(
        WordRecord(word=w["word"], start_s=w["start"], end_s=w["end"], confidence=w["conf"]) for w in result["result"]
    )
    return UtteranceRecord(leg=leg, start_s=words[0].start_s, end_s=words[-1].end_s, text=result["text"], words=words)


def said(leg: str, start: float, *words: str) -> UtteranceRecord:
    result = {
        "result": [
            {"word": w, "start": start + i * 0.4, "end": start + i * 0.4 + 0.35, "conf": 0.9}
            for i, w in enumerate(words)
        ],
        "text": " ".join(words),
    }
    return vosk_utterance(leg, json.dumps(result, ensure_ascii=False))


def test_a_good_call_scores_100(rules) -> None:
    hits = []
    call = CallCompliance(rules, CallFacts(rings_before_answer=2), on_hit=hits.append)
    call.add_utterance(said("agent", 0.5, "您好", "示例", "科技", "很", "高兴", "为", "您", "服务"))
    call.add_utterance(said("customer", 4.0, "我", "想", "问", "一下", "账单"))
    call.add_utterance(said("agent", 60.0, "感谢", "您", "的", "来电", "再见"))
    report = call.report(call_end_s=65.0, hung_up_first="customer")
    assert report.score == 100.0 and report.failed == ()
    assert {r.rule_id for r in report.results} == {
        "greeting",
        "greeting_company",
        "banned_phrases",
        "closing",
        "customer_hangs_up_first",
    }
    assert [(h.rule_id, h.kind, h.at_s) for h in hits] == [
        ("greeting", "satisfied", 0.5),
        ("greeting_company", "satisfied", 0.9),
    ]


def test_a_banned_phrase_is_a_live_violation_with_its_time(rules) -> None:
    hits = []
    call = CallCompliance(rules, CallFacts(), on_hit=hits.append)
    call.add_utterance(said("agent", 20.0, "这个", "我", "不", "知道"))
    call.add_utterance(said("customer", 25.0, "我", "不", "知道"))  # the customer may say it
    [violation] = [h for h in hits if h.kind == "violation"]
    assert (violation.rule_id, violation.leg, violation.at_s, violation.severity) == (
        "banned_phrases",
        "agent",
        20.4,
        "critical",
    )
    report = call.report(30.0, "customer")
    [failed] = [r for r in report.failed if r.rule_id == "banned_phrases"]
    assert [e.matched_text for e in failed.evidence] == ["我 不 知道"]
    assert report.score < 100


def test_a_critical_banned_phrase_alerts_from_the_first_partial_that_shows_it(rules) -> None:
    """The shipped 服务禁语 rule is critical: alerted at first sight (speech at scale: the agent is still
    talking), and the final result that confirms it does not alert twice."""
    hits = []
    call = CallCompliance(rules, CallFacts(), on_hit=hits.append)
    call.add_partial("agent", "这个 我", 10.0)
    assert hits == []
    call.add_partial("agent", "这个 我 不 清楚", 10.5)
    assert [(h.kind, h.matched_text, h.at_s) for h in hits] == [("violation", "不 清楚", 10.5)]
    call.add_utterance(said("agent", 9.8, "这个", "我", "不", "清楚"))
    assert len([h for h in hits if h.kind == "violation"]) == 1
    assert "banned_phrases" in {r.rule_id for r in call.report(20.0).failed}


def test_a_stable_partial_reports_a_banned_phrase_before_the_utterance_ends(rules) -> None:
    """A rule below critical waits until the phrase has stayed in the partial results partial_stable_s."""
    major = replace(
        rules,
        rules=tuple(
            replace(rule, spec=rule.spec.model_copy(update={"severity": "major"}))
            if rule.id == "banned_phrases"
            else rule
            for rule in rules.rules
        ),
    )
    hits = []
    call = CallCompliance(major, CallFacts(), on_hit=hits.append)
    call.add_partial("agent", "这个 我", 10.0)
    call.add_partial("agent", "这个 我 不 清楚", 10.5)
    assert hits == []  # not yet stable
    call.add_partial("agent", "这个 我 不 清楚", 10.75)
    assert [(h.kind, h.matched_text, h.at_s) for h in hits] == [("violation", "不 清楚", 10.5)]
    call.add_utterance(said("agent", 9.8, "这个", "我", "不", "清楚"))
    assert len([h for h in hits if h.kind == "violation"]) == 1  # the final does not alert twice
    assert "banned_phrases" in {r.rule_id for r in call.report(20.0).failed}


def test_a_missing_greeting_is_reported_when_its_window_closes(rules) -> None:
    hits = []
    call = CallCompliance(rules, CallFacts(), on_hit=hits.append)
    call.add_utterance(said("agent", 0.5, "喂"))
    call.advance("agent", 9.0)
    assert [h.kind for h in hits] == ["violation"]  # 喂 is banned; greeting still has time
    call.advance("agent", 11.6)  # the window (10 s) plus the recogniser's grace (1.5 s) has passed
    assert [(h.rule_id, h.kind, h.at_s) for h in hits][-1] == ("greeting", "missing", 10.0)
    call.advance("agent", 20.0)
    assert sum(1 for h in hits if h.rule_id == "greeting") == 1  # reported once


def test_a_late_answer_requires_the_apology(rules) -> None:
    on_time = CallCompliance(rules, CallFacts(rings_before_answer=3))
    late = CallCompliance(rules, CallFacts(rings_before_answer=4))
    for call in (on_time, late):
        call.add_utterance(said("agent", 0.5, "您好", "示例", "科技"))
    assert "late_answer_apology" not in {r.rule_id for r in on_time.report(30).results}
    assert [r.rule_id for r in late.report(30).failed] == ["late_answer_apology", "closing"]
    apologised = CallCompliance(rules, CallFacts(rings_before_answer=5))
    apologised.add_utterance(said("agent", 0.5, "您好", "抱歉", "让", "您", "久", "等", "了", "示例", "科技"))
    assert "late_answer_apology" not in {r.rule_id for r in apologised.report(30).failed}


def test_hold_phrases_are_checked_around_the_hold(rules) -> None:
    call = CallCompliance(rules, CallFacts())
    call.add_utterance(said("agent", 30.0, "请", "稍", "等"))
    call.mark_event("hold_start", 35.0)
    call.mark_event("hold_end", 80.0)
    call.add_utterance(said("agent", 81.0, "对不起", "让", "您", "久", "等", "了"))
    results = {r.rule_id: r for r in call.report(120.0).results}
    assert results["hold_request"].passed and results["hold_return"].passed
    no_hold = {r.rule_id for r in CallCompliance(rules, CallFacts()).report(120.0).results}
    assert "hold_request" not in no_hold  # not applicable without a hold


def test_the_agent_must_not_hang_up_first(rules) -> None:
    call = CallCompliance(rules, CallFacts())
    call.add_utterance(said("agent", 0.5, "您好", "示例", "科技"))
    call.add_utterance(said("agent", 50.0, "感谢", "您", "的", "来电"))
    report = call.report(55.0, hung_up_first="agent")
    [failed] = report.failed
    assert failed.rule_id == "customer_hangs_up_first" and failed.evidence[0].matched_text == "hung_up_first=agent"


def test_closing_must_be_near_the_end(rules) -> None:
    call = CallCompliance(rules, CallFacts())
    call.add_utterance(said("agent", 0.5, "您好", "示例", "科技", "感谢", "您", "的", "来电"))
    assert "closing" in {r.rule_id for r in call.report(300.0).failed}


def test_rules_on_the_command_line(desk: Path) -> None:
    from click.testing import CliRunner

    from contactcenter.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["--settings", str(desk), "rules", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows["banned_phrases"]["type"] == "banned" and rows["greeting"]["window"] == "first:10"
    tried = runner.invoke(cli, ["--settings", str(desk), "rules", "test", "喂 你好 这个 我 不 青 楚", "我 知道 了"])
    assert tried.exit_code == 0
    assert "greeting (required, said): '您好' as '你好'" in tried.stdout
    assert "banned_phrases (banned): '不清楚' as '不 青 楚', exact" in tried.stdout  # 青 and 清 are both qing
    assert tried.stdout.rstrip().endswith("我 知道 了\n  no rule")


def test_a_broken_rules_file_stops_the_command_with_the_reason(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from contactcenter.cli import cli
    from tests.helpers.settings import make_desk

    desk = make_desk(tmp_path / "desk")
    (desk.parent / "scripts_zh" / "rules.toml").write_text(
        '[[rules]]\nid = "x"\nphrases = ["您好"]\nwindow = "soon"\n', encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["--settings", str(desk), "rules", "list"])
    assert result.exit_code == 2 and "rule 'x' window" in result.stderr and "Traceback" not in result.output
