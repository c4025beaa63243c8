"""One list of findings per call: the end-of-call report reuses what was reported live, and what is stored
is that list, each finding once."""

from __future__ import annotations

import pytest

from contactcenter.records import UtteranceRecord, WordRecord
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.rules import load_rules
from tests.helpers.paths import REPO


@pytest.fixture(scope="module")
def rules():
    return load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])


def said(leg: str, start: float, *words: str) -> UtteranceRecord:
    records = tuple(
        WordRecord(word=w, start_s=start + i * 0.4, end_s=start + i * 0.4 + 0.35, confidence=0.9)
        for i, w in enumerate(words)
    )
    return UtteranceRecord(
        leg=leg, start_s=records[0].start_s, end_s=records[-1].end_s, text=" ".join(words), words=records
    )


def test_a_violation_seen_in_a_partial_is_one_finding_in_the_report_and_the_store(rules) -> None:
    alerts = []
    call = CallCompliance(rules, CallFacts(), on_hit=alerts.append)
    call.add_utterance(said("agent", 0.5, "您好", "示例", "科技", "很", "高兴", "为", "您", "服务"))
    call.add_partial("agent", "这个 我 不 清楚", 10.5)
    call.add_partial("agent", "这个 我 不 清楚", 10.75)  # stable: alerted early, timed by the partial
    call.add_utterance(said("agent", 9.8, "这个", "我", "不", "清楚"))  # the final result times it at 10.6
    report = call.report(30.0, "customer")
    [banned] = [r for r in report.results if r.rule_id == "banned_phrases"]
    [evidence] = banned.evidence
    violations = [f for f in call.findings if f.rule_id == "banned_phrases"]
    assert violations == [evidence]  # the same finding, not a second one at the final's time
    assert evidence.live and evidence.at_s == 10.5
    assert [a for a in alerts if a.kind == "violation"] == [evidence]


def test_every_piece_of_evidence_is_in_the_findings_once(rules) -> None:
    call = CallCompliance(rules, CallFacts(rings_before_answer=5), on_hit=lambda hit: None)
    call.add_utterance(said("agent", 0.5, "喂"))
    call.advance("agent", 12.0)  # the greeting's window closes live: "missing"
    call.add_utterance(said("agent", 20.0, "我", "不", "知道"))
    report = call.report(40.0, "agent")
    evidence = [e for r in report.results for e in r.evidence]
    assert all(any(e is f for f in call.findings) for e in evidence)
    keys = [(f.rule_id, f.kind, f.leg, f.at_s) for f in call.findings]
    assert len(keys) == len(set(keys))
    assert report.score < 100
    assert {("greeting", "missing"), ("customer_hangs_up_first", "violation")} <= {
        (f.rule_id, f.kind) for f in call.findings
    }
    again = call.report(40.0, "agent")  # reporting again adds nothing
    assert again == report and len(call.findings) == len(keys)


def test_a_call_the_desk_placed_is_checked_by_the_rules_for_calls_placed(rules) -> None:
    """A callback or survey opens with a recorded prompt: greeting, closing and hang-up order are rules for
    calls taken; banned phrases apply to every call."""
    placed = CallCompliance(rules, CallFacts(direction="outbound"), on_hit=lambda hit: None)
    placed.add_utterance(said("agent", 2.0, "为了", "提高", "服务", "质量"))
    placed.add_utterance(said("agent", 20.0, "这个", "我", "不", "知道"))
    report = placed.report(40.0, "agent")
    assert {r.rule_id for r in report.results} == {"banned_phrases"}
    assert report.failed[0].rule_id == "banned_phrases"
    taken = CallCompliance(rules, CallFacts(direction="inbound"), on_hit=lambda hit: None)
    assert {"greeting", "closing", "customer_hangs_up_first"} <= {
        r.rule_id for r in taken.report(40.0, "agent").results
    }
