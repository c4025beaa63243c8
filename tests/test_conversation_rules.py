"""The handbook rules that are not phrases (issue 20): interruptions, speech rate, listening, dead air.

Real Mandarin clips are placed on two legs at chosen offsets over line noise, so every overlap, turn and
silence is known to the frame; the timeline is judged by the real WebRTC VAD, as a live call (legs
interleaved frame by frame) and as a recording (one leg, then the other), and both must give exactly what
was placed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contactcenter.records import RuleHitRecord, UtteranceRecord, WordRecord
from contactcenter.settings import SettingsError
from contactcenter.speech import conversation_rules as talk_rules
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.rules import Rule, RuleSpec, build_rule, load_rules
from contactcenter.speech.talk_activity import Span, TalkActivity
from tests.helpers.two_legs import TwoLegs, judged_live, judged_recording

TOLERANCE_S = 0.1  # a 20 ms frame or two either side, plus the clip's own onset
RULES = """
[[rules]]
id = "interrupt"
kind = "interruption"
description = "不打断"
max_count = 0
complaint_max_count = 0
complaint_phrases = ["投诉"]

[[rules]]
id = "rate"
kind = "speech_rate"
description = "语速"
min_cpm = 180
max_cpm = 300
rate_window_s = 20

[[rules]]
id = "listen"
kind = "listening"
description = "倾听"
phrases = ["嗯", "是的", "我明白了"]
turn_s = 10

[[rules]]
id = "silence"
kind = "dead_air"
description = "冷场"
phrases = ["请稍等"]
silence_s = 10

[[rules]]
id = "ratio"
kind = "talk_ratio"
description = "占比"
"""


def rule(kind: str, **settings: object) -> Rule:
    return build_rule(RuleSpec(id=kind, kind=kind, **settings), list(settings.get("phrases", [])), [], {})  # type: ignore[arg-type]


def talk_of(activity: TalkActivity, until_s: float, **extra: object) -> talk_rules.Talk:
    return talk_rules.Talk(activity.spans("agent"), activity.spans("customer"), until_s, **extra)  # type: ignore[arg-type]


def interruption_call(echo: bool, seed: int = 7) -> TwoLegs:
    """The customer talks from 5.0 s (r09: 5.0–8.82, 9.42–14.68, 15.12–17.42); the agent cuts in at 7.0 s
    (r01: 7.0–10.0) while the customer goes on to 8.82 s: one interruption, 1.82 s of overlap. Later the
    customer talks 25.0–28.54 s (r13) and the agent answers at 29.0 s (r15): a turn, not an interruption."""
    call = TwoLegs(40, seed=seed)
    call.place_speech("customer", "r09", 5.0).place_speech("agent", "r01", 7.0)
    call.place_speech("customer", "r13", 25.0).place_speech("agent", "r15", 29.0)
    return call.with_echo() if echo else call


@pytest.mark.parametrize("seed", [7, 8])
@pytest.mark.parametrize("echo", [False, True], ids=["clean", "agent-echo-on-customer-leg"])
def test_the_interruption_placed_is_found_and_nothing_else(echo: bool, seed: int) -> None:
    activity = judged_live(interruption_call(echo, seed))
    found = talk_rules.interruptions(talk_of(activity, 40.0), rule("interruption"))
    assert len(found) == 1
    assert found[0].span.start == pytest.approx(7.0, abs=TOLERANCE_S)
    # the echo's first 150 ms after the customer stops cannot be told from the customer (the agent has not
    # yet been heard alone, so the echo path is not known): the overlap may read that much longer
    assert found[0].span.length == pytest.approx(1.82, abs=0.2 if echo else TOLERANCE_S)
    assert found[0].leg == "agent"


def test_echo_of_the_agent_is_not_the_customer_talking() -> None:
    """With an attenuated (15 dB), delayed (150 ms) copy of the agent on the customer leg, the customer's
    talk is what it was without it, give or take the echo's first and last syllables."""
    clean = judged_live(interruption_call(echo=False))
    echoed = judged_live(interruption_call(echo=True))
    assert echoed.echo_frames > 50  # the echo was loud enough to be taken for speech, and was taken out
    clean_talk = sum(s.length for s in clean.spans("customer"))
    echoed_talk = sum(s.length for s in echoed.spans("customer"))
    assert echoed_talk == pytest.approx(clean_talk, abs=0.4)
    agent_alone = Span(29.0, 32.66)  # the agent talking, the customer silent: only echo on the customer leg
    assert not [s for s in echoed.spans("customer") if s.end > agent_alone.start and s.start < agent_alone.end]


def test_a_live_call_and_its_recording_give_the_same_timeline() -> None:
    call = interruption_call(echo=True)
    live, recorded = judged_live(call), judged_recording(call)
    assert live.spans("agent") == recorded.spans("agent")
    assert live.spans("customer") == recorded.spans("customer")
    # frame by frame, and hundreds of frames measured together for the echo test: the same frames are echo
    assert live.echo_frames == recorded.echo_frames > 50


def test_a_short_listening_sound_over_the_customer_is_not_an_interruption_and_counts_as_listening() -> None:
    """r06 ("哦嗯", 0.92 s) said at 6.0 s, in the customer's pause (r09: 2.0–5.82, 6.42–11.68, 12.12–14.42),
    the customer going on over it: a listening response, in one customer turn of 12.42 s."""
    call = TwoLegs(25).place_speech("customer", "r09", 2.0).place_speech("agent", "r06", 6.0)
    activity = judged_live(call)
    talk = talk_of(activity, 25.0)
    assert talk_rules.interruptions(talk, rule("interruption")) == []
    listening = rule("listening", phrases=["是的"], turn_s=10)
    turns = talk_rules.customer_turns(talk, listening)
    assert len(turns) == 1 and turns[0].length == pytest.approx(12.42, abs=TOLERANCE_S)
    assert talk_rules.long_turns_unanswered(talk, listening) == []


def test_a_long_customer_turn_with_no_response_is_found() -> None:
    call = TwoLegs(25).place_speech("customer", "r09", 2.0).place_speech("agent", "r01", 17.0)
    talk = talk_of(judged_live(call), 25.0)
    missing = talk_rules.long_turns_unanswered(talk, rule("listening", phrases=["是的"], turn_s=10))
    assert len(missing) == 1
    assert missing[0].span.start == pytest.approx(2.0, abs=TOLERANCE_S)
    assert missing[0].span.end == pytest.approx(14.42, abs=TOLERANCE_S)
    # a recognised listening word during the turn answers it too, even with no sound the VAD would count
    said = UtteranceRecord(leg="agent", start_s=8.0, end_s=8.3, text="是的")
    answered = talk_rules.Talk(talk.agent, talk.customer, talk.until_s, utterances=[said])
    assert talk_rules.long_turns_unanswered(answered, rule("listening", phrases=["是的"], turn_s=10)) == []


def dead_air_call() -> TwoLegs:
    """The agent talks 5.0–8.0 s, then 12 s of silence on both legs, the customer talks 20.0–23.0 s,
    then silence to 40 s, which a hold from 25 s to 39 s covers."""
    return TwoLegs(40).place_speech("agent", "r01", 5.0).place_speech("customer", "r01", 20.0)


def test_the_dead_air_placed_is_found_and_none_during_hold() -> None:
    activity = judged_live(dead_air_call())
    holds = [Span(25.0, 39.0)]
    found = talk_rules.dead_air(talk_of(activity, 40.0, holds=holds), rule("dead_air", silence_s=10))
    assert len(found) == 1
    assert found[0].span.start == pytest.approx(8.0, abs=TOLERANCE_S)
    assert found[0].span.end == pytest.approx(20.0, abs=TOLERANCE_S)
    without_hold = talk_rules.dead_air(talk_of(activity, 40.0), rule("dead_air", silence_s=10))
    assert len(without_hold) == 2


def test_dead_air_announced_by_a_hold_line_is_excused() -> None:
    activity = judged_live(dead_air_call())
    please_wait = UtteranceRecord(leg="agent", start_s=6.5, end_s=7.6, text="请 稍 等")
    talk = talk_of(activity, 20.5, utterances=[please_wait])
    assert talk_rules.dead_air(talk, rule("dead_air", silence_s=10, phrases=["请稍等"])) == []
    # said too long before the silence, it does not excuse it
    assert len(talk_rules.dead_air(talk, rule("dead_air", silence_s=10, phrases=["请稍等"], excuse_s=0))) == 1
    assert len(talk_rules.dead_air(talk, rule("dead_air", silence_s=10))) == 1  # no hold line configured


def words_at(leg: str, start: float, text: str, chars_per_second: float) -> UtteranceRecord:
    """An utterance in Vosk's format: one word per two characters, evenly timed at the given rate."""
    step = 2 / chars_per_second
    words = tuple(
        WordRecord(word=text[i : i + 2], start_s=round(start + n * step, 3), end_s=round(start + (n + 1) * step, 3))
        for n, i in enumerate(range(0, len(text), 2))
    )
    return UtteranceRecord(
        leg=leg,  # type: ignore[arg-type]
        start_s=words[0].start_s,
        end_s=words[-1].end_s,
        text=" ".join(w.word for w in words),
        words=words,
    )


TEXT = "您好请问有什么可以帮您的吗我们马上为您处理这个问题请您放心吧"  # 30 characters


def test_speech_rate_from_word_timings() -> None:
    steady = [words_at("agent", 10.0 * n, TEXT, chars_per_second=4.0) for n in range(6)]  # 240 字/分钟
    windows, outside = talk_rules.rate_outside(steady, rule("speech_rate", rate_window_s=20))
    assert [round(w.cpm) for w in windows] == [240, 240]
    assert outside == []
    # one quick sentence (6 字/秒 = 360) among steady ones does not fail a window of 20 s of speaking
    mixed = [*steady[:3], words_at("agent", 30.0, TEXT, chars_per_second=6.0), *steady[4:]]
    assert talk_rules.rate_outside(mixed, rule("speech_rate", rate_window_s=20))[1] == []
    # a whole window of it does, and the finding is that window
    fast = [words_at("agent", 8.0 * n, TEXT, chars_per_second=6.0) for n in range(8)]
    _, outside = talk_rules.rate_outside(fast, rule("speech_rate", rate_window_s=20))
    assert len(outside) == 2 and outside[0].text == "360/min" and outside[0].span.start == 0.0
    slow = [words_at("agent", 15.0 * n, TEXT, chars_per_second=2.5) for n in range(3)]  # 150 字/分钟
    assert len(talk_rules.rate_outside(slow, rule("speech_rate", rate_window_s=20))[1]) == 1
    # too little speech to judge: no window, no verdict
    assert talk_rules.rate_windows([words_at("agent", 0.0, TEXT[:10], 4.0)], 20) == []
    # the customer's speed is not the agent's
    assert talk_rules.rate_windows([words_at("customer", 0.0, TEXT, 8.0)] * 4, 20) == []


def rules_file(tmp_path: Path, text: str = RULES) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def compliance_over(call: TwoLegs, tmp_path: Path, facts: CallFacts | None = None) -> tuple[CallCompliance, list]:
    """The call judged as the desk judges a live call: the timeline's live alerts, then the report."""
    rules = load_rules(rules_file(tmp_path), [])
    alerts: list[RuleHitRecord] = []
    compliance = CallCompliance(rules, facts or CallFacts(), on_hit=alerts.append)
    activity = TalkActivity(8000, ("agent", "customer"), on_settled=compliance.talk_settled)
    compliance.watch_talk(activity)
    for leg, frame in call.frames():
        activity.add_audio(leg, frame)  # type: ignore[arg-type]
    activity.finish_leg("agent")
    activity.finish_leg("customer")
    return compliance, alerts


def test_interruptions_and_dead_air_alert_live_and_the_report_keeps_the_same_findings(tmp_path: Path) -> None:
    """The customer talks 5.0–17.42 s, the agent cuts in at 7.0 s; nobody talks from 17.42 s until the agent
    again at 41.0–44.0 s, then silence to 60 s: one interruption and two dead airs, alerted as they happen."""
    call = TwoLegs(60, seed=3)
    call.place_speech("customer", "r09", 5.0).place_speech("agent", "r01", 7.0).place_speech("agent", "r01", 41.0)
    call.with_echo()
    compliance, alerts = compliance_over(call, tmp_path)
    assert [(a.rule_id, a.live) for a in alerts] == [("interrupt", True), ("silence", True), ("silence", True)]
    assert alerts[0].at_s == pytest.approx(7.0, abs=TOLERANCE_S)
    assert alerts[1].at_s == pytest.approx(17.42, abs=TOLERANCE_S)  # 17.42 → 41.0: 23.6 s of silence
    assert alerts[2].at_s == pytest.approx(44.0, abs=TOLERANCE_S)
    report = compliance.report(60.0, hung_up_first="customer")
    results = {r.rule_id: r for r in report.results}
    assert set(results) == {"interrupt", "listen", "silence"}  # rate: too little speech; ratio: not scored
    assert not results["interrupt"].passed and not results["silence"].passed
    (interruption,) = results["interrupt"].evidence
    assert interruption.at_s == alerts[0].at_s and interruption.live  # the live finding, completed
    assert interruption.end_s == pytest.approx(8.82, abs=0.2)
    assert len(compliance.findings) == 3  # one list: the report added none
    measures = report.conversation
    assert measures is not None and measures.both_legs and measures.interruptions == 1
    # both talk 7.0–8.82 s, and again from 9.42 s, when the customer goes on, to 10.0 s, when the agent stops
    assert measures.overlap_s == pytest.approx(1.82 + 0.58, abs=0.2)
    assert measures.dead_air_s == pytest.approx((41.0 - 17.42) + (60 - 44.0), abs=0.3)
    assert 0.3 < (measures.talk_ratio or 0) < 0.5


def test_a_complaint_makes_the_interruption_limit_stricter(tmp_path: Path) -> None:
    lenient = RULES.replace("max_count = 0\ncomplaint_max_count = 0", "max_count = 1\ncomplaint_max_count = 0")
    rules = load_rules(rules_file(tmp_path, lenient), [])
    interruption = next(r for r in rules.rules if r.id == "interrupt")
    activity = judged_live(interruption_call(echo=False))
    found = talk_rules.interruptions(talk_of(activity, 40.0), interruption)
    assert talk_rules.interruption_passed(talk_of(activity, 40.0), interruption, found)
    assert not talk_rules.interruption_passed(talk_of(activity, 40.0, complaint=True), interruption, found)
    said = UtteranceRecord(leg="customer", start_s=5.5, end_s=7.0, text="我 要 投诉")
    assert not talk_rules.interruption_passed(talk_of(activity, 40.0, utterances=[said]), interruption, found)


def test_without_a_timeline_the_conversation_rules_are_not_judged(tmp_path: Path) -> None:
    """Text alone (no audio) cannot tell who talked when: those rules give no verdict, rather than a pass."""
    rules = load_rules(rules_file(tmp_path), [])
    compliance = CallCompliance(rules, CallFacts())
    compliance.add_utterance(words_at("agent", 1.0, TEXT, 4.0))
    report = compliance.report(30.0)
    assert report.results == () and report.score is None and report.conversation is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('kind = "dead_air"\nmin_cpm = 100', "min_cpm: not a setting of dead_air rules"),
        ('kind = "phrase"\nphrases = ["您好"]\nsilence_s = 3', "silence_s: only for conversation rules"),
        ('kind = "speech_rate"\nmin_cpm = 300\nmax_cpm = 200', "min_cpm must be below max_cpm"),
        ('kind = "listening"', "needs its listening responses as phrases"),
        ('kind = "interruption"\nnegate = true', "negate: not a setting of interruption rules"),
        ('kind = "dead_air"\nsilence_s = -1', "silence_s"),
    ],
)
def test_bad_conversation_rules_are_refused_with_one_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_rules(rules_file(tmp_path, f'[[rules]]\nid = "x"\n{extra}\n'), [])
    assert message in str(error.value) and "\n" not in str(error.value).strip()


def test_the_shipped_rules_have_every_conversation_kind() -> None:
    rules = load_rules(Path(__file__).resolve().parents[1] / "scripts_zh" / "rules.toml", ["测试公司"])
    assert {r.spec.kind for r in rules.conversation_rules()} == set(talk_rules_kinds())


def talk_rules_kinds() -> tuple[str, ...]:
    from contactcenter.speech.rules import CONVERSATION_KINDS

    return CONVERSATION_KINDS
