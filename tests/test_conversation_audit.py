"""The conversation rules through the whole speech path, on the real Vosk library (Korean model): a live
call pushed frame by frame gives the same findings and measures as its stereo recording and as its pair of
mono leg files audited afterwards; the speech rate comes from the recogniser's own word timings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from contactcenter.cli import cli
from contactcenter.qa.audit import audit_files, pair_legs
from contactcenter.records import CallRecord, CallSpeechOutcome, ConversationMeasures, RuleHitRecord
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.speech.vosk_model import SpeechModel
from tests.helpers.two_legs import FRAME_BYTES, RATE, TwoLegs

RULES = """
[[rules]]
id = "interrupt"
kind = "interruption"
description = "不打断"

[[rules]]
id = "rate"
kind = "speech_rate"
description = "语速"
rate_window_s = 4

[[rules]]
id = "silence"
kind = "dead_air"
description = "冷场"
silence_s = 10
"""
# judged from the voice activity alone, so exactly the same on every path; the speech rate depends on what
# the recogniser made of the words, which a warm recogniser reused from the pool may hear a little differently
TIMELINE_RULES = {"interrupt", "silence"}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules(path, [])


@pytest.fixture(scope="module")
def monitor(korean_model: SpeechModel) -> SpeechMonitor:
    return SpeechMonitor(korean_model, workers=2, max_backlog_seconds=120)


@pytest.fixture(scope="module")
def live_outcome(monitor: SpeechMonitor, rules: RuleSet) -> CallSpeechOutcome:
    """The call as the desk hears it live (recognised once for the tests below)."""
    return live(the_call(), monitor, rules)


def the_call() -> TwoLegs:
    """Customer 5.0–17.42 s (r09), the agent cutting in at 7.0 s (r01), 12.6 s of silence, the agent again
    at 30.0–33.0 s (r01), silence to the end: one interruption, two dead airs."""
    call = TwoLegs(45, seed=5)
    call.place_speech("customer", "r09", 5.0).place_speech("agent", "r01", 7.0).place_speech("agent", "r01", 30.0)
    return call.with_echo()


def live(call: TwoLegs, monitor: SpeechMonitor, rules: RuleSet) -> CallSpeechOutcome:
    record = CallRecord(id=1, sip_call_id="conv-1", invited_at=datetime.now(UTC), answered_at=datetime.now(UTC))
    speech = CallSpeech(
        monitor,
        rules,
        record,
        CallFacts(),
        rate=RATE,
        publish=lambda hook, **kw: PUBLISHED.append({"hook": hook, **kw}),
    )
    for leg, frame in call.frames():
        assert len(frame) == FRAME_BYTES
        speech.push(leg, frame, block=True)  # type: ignore[arg-type]
    return speech.finish(call.seconds, hung_up_first="customer", timeout=120)


PUBLISHED: list[dict[str, object]] = []  # what the live call published to plugins, the live view and the desktop


def findings(lines: list[str]) -> list[str]:
    return sorted(line.split(":")[0] for line in lines if line.split()[1].rstrip(":") in TIMELINE_RULES)


def test_live_and_both_kinds_of_recording_agree(korean_model: SpeechModel, rules: RuleSet, tmp_path: Path) -> None:
    call = the_call()
    monitor = SpeechMonitor(korean_model, workers=2, max_backlog_seconds=120)
    outcome = live(call, monitor, rules)
    said = [f"{h.at_s:.1f}s {h.rule_id}: {h.matched_text}" for h in outcome.hits if h.kind == "violation"]
    placed = [("interrupt", 7.0), ("silence", 17.42), ("silence", 33.0)]
    found = sorted((line.split()[1].rstrip(":"), float(line.split("s ")[0])) for line in findings(said))
    assert [rule for rule, _ in found] == [rule for rule, _ in placed]
    assert [at for _, at in found] == pytest.approx([at for _, at in placed], abs=0.15)
    alerted = [h for kw in PUBLISHED if isinstance(h := kw.get("hit"), RuleHitRecord) and h.rule_id in TIMELINE_RULES]
    assert sorted((h.rule_id, h.at_s) for h in alerted) == sorted(
        (h.rule_id, h.at_s) for h in outcome.hits if h.rule_id in TIMELINE_RULES
    )
    assert all(h.live and h.kind == "violation" for h in alerted)  # as rule_hit, while the call was going on
    results = {r.rule_id: r.passed for r in outcome.report.results}
    assert results["interrupt"] is False and results["silence"] is False
    measures = outcome.report.conversation
    assert measures is not None and measures.interruptions == 1

    # the same call as a PBX records it: stereo, and one mono file per leg (agent "-out", customer "-in")
    folder = tmp_path / "recordings"
    folder.mkdir()
    agent = np.frombuffer(call.pcm("agent"), dtype="<i2")
    customer = np.frombuffer(call.pcm("customer"), dtype="<i2")
    soundfile.write(folder / "stereo.wav", np.stack([agent, customer], axis=1), RATE, subtype="PCM_16")
    soundfile.write(folder / "call7-out.wav", agent, RATE, subtype="PCM_16")
    soundfile.write(folder / "call7-in.wav", customer[: customer.size - RATE], RATE, subtype="PCM_16")  # 1 s short
    paths = sorted(folder.iterdir())
    assert pair_legs(paths, ("-out", "-in")) == [
        (folder / "call7-out.wav", folder / "call7-in.wav"),
        folder / "stereo.wav",
    ]
    audited = audit_files(paths, monitor, rules, None, leg_suffixes=("-out", "-in"))
    assert [r.ok for r in audited] == [True, True]
    for result in audited:
        assert findings(result.violations) == findings(said), result.path
        assert {"interrupt", "silence"} <= set(result.failed_rules)


def test_speech_rate_is_the_recognisers_characters_over_its_word_timings(live_outcome: CallSpeechOutcome) -> None:
    outcome = live_outcome
    agent = [u for u in outcome.transcript if u.leg == "agent"]
    assert agent, "the Korean model heard nothing on the agent leg"
    chars = sum(len(u.text.replace(" ", "")) for u in agent)
    speaking = sum(u.end_s - u.start_s for u in agent)
    measures = outcome.report.conversation
    assert isinstance(measures, ConversationMeasures)
    assert measures.agent_chars == chars
    assert measures.speech_rate_cpm == pytest.approx(60 * chars / speaking, abs=0.1)
    rate = next(r for r in outcome.report.results if r.rule_id == "rate")
    outside = [h for h in rate.evidence if h.kind == "violation"]
    assert rate.passed == (not outside)
    for hit in outside:  # each finding is a window of the agent's speech, with its rate
        assert hit.end_s is not None and hit.end_s > (hit.at_s or 0) and hit.matched_text.endswith("/min")


def test_a_one_leg_recording_is_judged_on_speech_rate_alone(
    monitor: SpeechMonitor, rules: RuleSet, tmp_path: Path
) -> None:
    mono = tmp_path / "agent-only.wav"
    soundfile.write(mono, np.frombuffer(the_call().pcm("agent"), dtype="<i2"), RATE, subtype="PCM_16")
    (result,) = audit_files([mono], monitor, rules, None)
    assert result.ok and "interrupt" not in result.failed_rules and "silence" not in result.failed_rules
    assert findings(result.violations) == []


def test_bad_leg_suffixes_are_refused_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", str(tmp_path), "--leg-suffixes", "-in"])
    assert result.exit_code == 2 and "two different suffixes" in result.output
    assert "Traceback" not in result.output
