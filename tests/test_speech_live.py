"""A call's speech end to end on the real recogniser: both legs, rule hits published through real plugin
hooks, the report, the store; and the monitor under load (never blocking, saying when it falls behind).

The rules here ban a word the Korean model really recognises in the clip, so the whole chain
audio → Vosk → rules → rule_hit is exercised for real; the Mandarin phrase lists are tested on text in
test_rules.py (the Mandarin model cannot be had here).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.hooks.host import PluginHost
from contactcenter.records import CallRecord, UtteranceRecord
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Call
from tests.helpers.factories import RECORDER, install_plugin
from tests.helpers.korean import HANGOVER_MS, THRESHOLD_DBFS, words_recognised
from tests.helpers.paths import speech_clip
from tests.helpers.settings import desk_settings

RATE = 8000


def samples(name: str) -> np.ndarray:
    data, rate = soundfile.read(str(speech_clip(name)), dtype="int16")
    assert rate == RATE
    return data


def agent_audio() -> np.ndarray:
    return np.concatenate([np.zeros(RATE, dtype=np.int16), samples("real8k/r03.wav")])


@pytest.fixture(scope="module")
def recognised_words(korean_model: SpeechModel) -> list[str]:
    """Words the model recognises in the agent's audio, to write a rule that really fires."""
    return words_recognised(korean_model, agent_audio(), RATE)


def rules_banning(tmp_path: Path, *words: str) -> RuleSet:
    path = tmp_path / "rules.toml"
    phrases = ", ".join(f'"{word}"' for word in words)
    path.write_text(
        f'[[rules]]\nid = "banned"\nphrases = [{phrases}]\nnegate = true\nmatch = "exact"\nseverity = "critical"\n\n'
        '[[rules]]\nid = "greeting"\nphrases = ["없는인사말"]\nwindow = "first:2"\nmatch = "exact"\n',
        encoding="utf-8",
    )
    return load_rules(path, ["示例"])


def a_live_call() -> CallRecord:
    now = datetime.now(UTC)
    return CallRecord(
        id=1,
        sip_call_id="live-1@127.0.0.1",
        invited_at=now,
        answered_at=now,
        agent_extension="1001",
        remote_number="13800138000",
    )


def push_in_frames(speech: CallSpeech, leg: str, audio: np.ndarray, block: bool = False) -> None:
    frame = int(RATE * 0.02)
    for offset in range(0, len(audio), frame):
        assert speech.push(leg, audio[offset : offset + frame].tobytes(), block=block)


def test_a_banned_word_reaches_plugins_as_a_live_rule_hit(
    korean_model: SpeechModel, recognised_words, tmp_path: Path, site: Path, desk: Path
) -> None:
    install_plugin(site, "recorder", RECORDER)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    host = PluginHost(desk_settings(desk, url, {"CONTACTCENTER_PLUGINS__ENABLED": '["recorder"]'}), database)
    host.load_entry_points()
    monitor = SpeechMonitor(
        korean_model, workers=2, silence_threshold_dbfs=THRESHOLD_DBFS, silence_hangover_ms=HANGOVER_MS
    )
    call = a_live_call()
    speech = CallSpeech(
        monitor, rules_banning(tmp_path, *recognised_words), call, CallFacts(), rate=RATE, publish=host.bus.publish
    )
    agent = agent_audio()
    # r01 is at -31 dBFS, well above the silence gate (r02, at -40, once went unrecognised on a loaded machine)
    customer = np.concatenate([samples("real8k/r01.wav"), np.zeros(RATE * 2, dtype=np.int16)])
    push_in_frames(speech, "agent", agent)
    push_in_frames(speech, "customer", customer)
    outcome = speech.finish(call_end_s=len(agent) / RATE, hung_up_first="customer", timeout=60)
    host.bus.drain()

    calls = host.pm.get_plugin("recorder").CALLS
    hits = [args["hit"] for hook, args in calls if hook == "rule_hit"]
    violations = [h for h in hits if h.kind == "violation"]
    assert violations and all(h.rule_id == "banned" and h.leg == "agent" for h in violations)
    utterances = [args["utterance"] for hook, args in calls if hook == "utterance"]
    assert {u.leg for u in utterances} == {"agent", "customer"}
    said = [w for u in utterances if u.leg == "agent" for w in u.words]
    for hit in violations:  # each alert points at the word as said, in call time (the leading second counts)
        assert hit.at_s > 1.0
        assert any(
            w.word == hit.matched_text.replace(" ", "") and w.start_s - 0.05 <= hit.at_s <= w.end_s + 1.0 for w in said
        ), (hit, said)
    assert any(h.rule_id == "greeting" and h.kind == "missing" and h.at_s == 2.0 for h in hits)
    assert all(args["call"] == call for _, args in calls)

    assert {r.rule_id for r in outcome.report.failed} == {"banned", "greeting"}
    assert outcome.report.score == 0.0
    assert [u.start_s for u in outcome.transcript] == sorted(u.start_s for u in outcome.transcript)
    with database.session() as session:
        call_id = save_call(session, call, outcome.transcript, outcome.hits, outcome.report)
    with database.session() as session:
        stored = session.get(Call, call_id)
        assert stored.compliance_score == 0.0 and len(stored.utterances) == len(outcome.transcript)
        assert {h.rule_id for h in stored.rule_hits} == {"banned", "greeting"}
    host.close()
    monitor.close()


def test_numbers_are_masked_in_what_is_published(korean_model: SpeechModel, tmp_path: Path) -> None:
    published: list[tuple[str, dict]] = []
    speech = CallSpeech(
        SpeechMonitor(korean_model, workers=1),
        rules_banning(tmp_path, "없음말"),
        a_live_call(),
        CallFacts(),
        publish=lambda hook, **a: published.append((hook, a)),
    )
    utterance = UtteranceRecord(leg="customer", start_s=1.0, end_s=3.0, text="我 的 电话 是 13800138000")
    speech._on_final(utterance)
    [(hook, arguments)] = published
    assert hook == "utterance" and arguments["utterance"].text == "我 的 电话 是 *******8000"
    speech.finish(5.0, None, timeout=30)


def test_pushing_audio_never_waits_for_recognition(korean_model: SpeechModel) -> None:
    monitor = SpeechMonitor(korean_model, workers=1, max_backlog_seconds=120)
    legs = [monitor.open_leg("agent", RATE, lambda u: None) for _ in range(4)]
    audio = np.tile(samples("real8k/r03.wav"), 2).tobytes()
    frame = int(RATE * 0.02) * 2
    for offset in range(0, len(audio), frame):
        for leg in legs:
            assert leg.push(audio[offset : offset + frame])
    pushed = 4 * len(audio) / 2 / RATE
    # all 40 s were accepted while one worker had recognised only part of it: pushing did not wait
    assert monitor.metrics.audio_seconds < pushed / 2
    for leg in legs:
        leg.finish().result(timeout=120)
    assert monitor.metrics.legs_active == 0 and monitor.metrics.audio_seconds == pytest.approx(pushed)
    monitor.close()


def test_a_full_backlog_drops_audio_and_says_so(korean_model: SpeechModel, caplog: pytest.LogCaptureFixture) -> None:
    monitor = SpeechMonitor(korean_model, workers=1, max_backlog_seconds=0.5)
    leg = monitor.open_leg("agent", RATE, lambda u: None)
    audio = np.tile(samples("real8k/r03.wav"), 3).tobytes()
    frame = int(RATE * 0.02) * 2
    with caplog.at_level(logging.ERROR):
        accepted = [leg.push(audio[o : o + frame]) for o in range(0, len(audio), frame)]
    leg.finish().result(timeout=60)
    assert not all(accepted) and monitor.metrics.dropped_seconds > 0
    assert "dropping audio from recognition" in caplog.text and "the call itself is not affected" in caplog.text
    monitor.close()


def test_a_recording_pushed_with_block_loses_nothing(korean_model: SpeechModel) -> None:
    monitor = SpeechMonitor(korean_model, workers=1, max_backlog_seconds=0.5)
    finals: list[UtteranceRecord] = []
    leg = monitor.open_leg("agent", RATE, finals.append, live=False)
    audio = samples("real8k/r03.wav").tobytes()
    frame = int(RATE * 0.02) * 2
    assert all(leg.push(audio[o : o + frame], block=True) for o in range(0, len(audio), frame))
    leg.finish().result(timeout=60)
    assert monitor.metrics.dropped_seconds == 0 and finals
    monitor.close()


def test_an_ended_call_is_stored_then_published_and_kept_when_the_database_is_down(tmp_path: Path) -> None:
    from contactcenter.records import CallSpeechOutcome
    from contactcenter.storage.call_end import end_call, import_spooled_calls
    from tests.helpers.factories import a_call, a_report, transcript

    outcome = CallSpeechOutcome(transcript("我要投诉"), a_report(80, (("closing", "major"),)), [])
    published: list[tuple[str, dict]] = []
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.upgrade()

    stored = end_call(a_call(), outcome, database, tmp_path / "spool", lambda h, **a: published.append((h, a)))
    assert stored.id is not None
    [(hook, arguments)] = published
    assert hook == "call_ended" and arguments["call"].id == stored.id and arguments["report"].score == 80
    with database.session() as session:
        assert len(session.get(Call, stored.id).utterances) == 2

    down = Database("postgresql+psycopg://nobody@127.0.0.1:1/down")
    kept = end_call(
        a_call(sip_call_id="second@x"), outcome, down, tmp_path / "spool", lambda h, **a: published.append((h, a))
    )
    assert kept.id is None and published[-1][0] == "call_ended"  # plugins still hear of it
    assert import_spooled_calls(database, tmp_path / "spool") == 1
    with database.session() as session:
        assert session.query(Call).count() == 2
