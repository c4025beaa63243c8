"""Audits at scale (issue 18 item 5): `audit --workers N` on processes, the PostgreSQL queue with `audit-worker` on
real subprocesses (a worker killed mid-file included), and `audit --watch` on a folder a PBX writes into.

Real parts throughout: the Vosk library with the Korean model from PyPI, real Mandarin clips as recordings, a
throwaway PostgreSQL server, and the command as a user runs it (``python -m contactcenter``). Nothing sleeps a
fixed time: every wait polls with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import soundfile
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from contactcenter.cli import cli
from contactcenter.qa.audit import AuditResult, Target
from contactcenter.qa.audit_pool import ProcessAuditor
from contactcenter.qa.audit_watch import FolderWatch
from contactcenter.storage import Database
from contactcenter.storage.models import Call
from tests.helpers.paths import REPO, speech_clip
from tests.helpers.waiting import wait_until

#: Rules judged the same whatever a warm or cold recogniser makes of the words (a required phrase the Korean
#: model never hears in Mandarin audio, and the voice-activity rules), so that two runs can be compared row
#: for row. The transcripts themselves may differ by a word: a pooled recogniser carries its adaptation on.
RULES = """
[[rules]]
id = "greeting"
description = "开场问候"
phrases = ["您好"]
window = "first:15"

[[rules]]
id = "interrupt"
kind = "interruption"
description = "不打断"

[[rules]]
id = "silence"
kind = "dead_air"
description = "冷场"
silence_s = 3
"""
RATE = 8000
#: Conversation measures taken from the recognised words (the rest come from voice activity alone).
FROM_WORDS = {"agent_chars", "agent_speaking_s", "speech_rate_cpm"}


def clip(name: str) -> np.ndarray:
    samples, rate = soundfile.read(str(speech_clip(f"real8k/{name}.wav")), dtype="int16")
    assert rate == RATE
    return samples


def stereo(agent: list[str], customer: list[str]) -> np.ndarray:
    """A call: the agent's clips one after another on the left, the customer's on the right."""
    left, right = np.concatenate([clip(n) for n in agent]), np.concatenate([clip(n) for n in customer])
    both = np.zeros((max(left.size, right.size), 2), dtype=np.int16)
    both[: left.size, 0], both[: right.size, 1] = left, right
    return both


def write(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, RATE, subtype="PCM_16")
    return path


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    """Three short calls: two stereo, one pair of mono leg files as Asterisk's MixMonitor writes them."""
    folder = tmp_path / "calls"
    write(folder / "a.wav", stereo(["r04"], ["r05"]))
    write(folder / "b.wav", stereo(["r07"], ["r18"]))
    write(folder / "c-out.wav", clip("r13"))
    write(folder / "c-in.wav", clip("r01"))
    return folder


@pytest.fixture
def environment(tmp_path: Path, desk: Path, korean_model_path: Path) -> Callable[[str], dict[str, str]]:
    """The environment of a desk on a database: the repo's settings, the Korean model, the rules above."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")

    def env(database_url: str) -> dict[str, str]:
        values = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
        values.update(
            CONTACTCENTER_SETTINGS=str(desk),
            CONTACTCENTER_DATABASE__URL=database_url,
            CONTACTCENTER_SPEECH__MODEL_PATH=str(korean_model_path),
            CONTACTCENTER_SCRIPTS__RULES=str(rules),
            CONTACTCENTER_GENERAL__LOG_LEVEL="WARNING",
            CONTACTCENTER_SPEECH__WORKERS="1",  # one core's recognition per audit process: the processes scale it
        )
        return values

    return env


def contactcenter(*args: str, env: dict[str, str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contactcenter", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


class Running:
    """A command running in the background, its output gathered line by line as it comes."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "contactcenter", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.out if line.startswith("{")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """Start commands in the background; whatever still runs at the end is killed."""
    started: list[Running] = []

    def start(*args: str, env: dict[str, str]) -> Running:
        started.append(Running(*args, env=env))
        return started[-1]

    yield start
    for command in started:
        command.stop()


def upgraded(url: str, env: dict[str, str]) -> None:
    result = contactcenter("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr


def stored(url: str) -> dict[str, tuple]:
    """Each stored call by its key (the recording's content): what an audit decides, not the words it heard."""
    database = Database(url)
    try:
        with database.session() as session:
            return {
                call.sip_call_id: (
                    call.purpose,
                    round((call.ended_at - call.answered_at).total_seconds(), 3),
                    call.disposition,
                    call.compliance_score,
                    call.unchecked_reason,
                    sorted((r.rule_id, r.passed) for r in call.rule_results),
                    sorted((h.rule_id, h.kind, h.leg, h.at_s) for h in call.rule_hits),
                    {k: v for k, v in (call.conversation or {}).items() if k not in FROM_WORDS},
                    {u.leg for u in call.utterances},
                )
                for call in session.scalars(select(Call))
            }
    finally:
        database.dispose()


def queue_jobs(url: str) -> list[tuple[str, str, list[str]]]:
    """The audit queue's jobs: (files, status, the kinds of event each went through, in order)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        rows = connection.execute(
            "SELECT j.args->'files', j.status::text, array_agg(e.type::text ORDER BY e.at, e.id) "
            "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id GROUP BY j.id ORDER BY j.id"
        ).fetchall()
    return [(" + ".join(Path(f).name for f in files), status, events) for files, status, events in rows]


# ------------------------------------------------------------------------------------ processes on one machine


def test_two_worker_processes_store_what_one_stores(
    calls: Path, environment: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    """The embedded SQLite store, written by two processes at once: the same rows, findings and measures."""
    results = {}
    for workers in ("1", "2"):
        url = f"sqlite:///{tmp_path / f'workers-{workers}.db'}"
        env = environment(url)
        upgraded(url, env)
        run = contactcenter("audit", "--workers", workers, "--leg-suffixes", "-out,-in", "--json", str(calls), env=env)
        assert run.returncode == 0, run.stderr
        rows = json.loads(run.stdout)
        assert [Path(r["file"]).name for r in rows] == ["c-out.wav", "a.wav", "b.wav"]  # the order given, as ever
        assert all(r["ok"] and r["call_id"] for r in rows)
        results[workers] = stored(url)
    assert len(results["1"]) == 3
    assert results["2"] == results["1"]
    pair = next(v for v in results["1"].values() if v[0] == "c-out.wav")
    assert pair[-1] == {"agent", "customer"}  # both legs of the mono pair, as one call


def test_a_process_that_dies_mid_file_costs_nothing(tmp_path: Path) -> None:
    """The pool hands a dead child's recording to another (once); a recording that kills every child it meets is
    reported as failed rather than tried for ever. Each recording gets exactly one result."""
    once = tmp_path / "died-once"

    @contextlib.contextmanager
    def setup() -> Iterator[Callable[[Target], AuditResult]]:
        def audit(target: Target) -> AuditResult:
            assert isinstance(target, Path)
            if target.name == "poison.wav" or (target.name == "flaky.wav" and not once.exists()):
                once.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return AuditResult(target, ok=True, duration_s=1.0, call_id=os.getpid())

        yield audit

    pool = ProcessAuditor(2, setup)
    try:
        names = ["a.wav", "flaky.wav", "b.wav", "poison.wav", "c.wav"]
        numbers = {pool.submit(tmp_path / name): name for name in names}
        results: dict[str, list[AuditResult]] = {}
        while pool.pending:
            for number, result in pool.collect(30):
                results.setdefault(numbers[number], []).append(result)
    finally:
        pool.close()
    assert sorted(results) == sorted(names) and all(len(r) == 1 for r in results.values())
    assert all(results[name][0].ok for name in names if name != "poison.wav")
    poison = results["poison.wav"][0]
    assert not poison.ok and "died 2 times (killed by signal 9)" in poison.error


# ------------------------------------------------------------------------------------------ the PostgreSQL queue


def test_queue_commands_on_sqlite_say_postgresql_is_needed(
    calls: Path, environment: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = environment(f"sqlite:///{tmp_path / 'desk.db'}")
    for args in (["audit", "--enqueue", str(calls)], ["audit-worker", "--until-done"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 1, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: the audit queue needs PostgreSQL, and the database is sqlite:///"), line
        assert "Traceback" not in result.output


@pytest.mark.postgres
def test_two_workers_audit_every_queued_recording_once(
    calls: Path, environment: Callable[[str], dict[str, str]], postgres_server, running
) -> None:
    url = postgres_server.new_database()
    env = environment(url)
    upgraded(url, env)
    queued = contactcenter("audit", "--enqueue", "--leg-suffixes", "-out,-in", str(calls), env=env)
    assert queued.returncode == 0 and queued.stdout.startswith("queued 3 recordings for"), queued.stderr
    again = contactcenter("audit", "--enqueue", "--leg-suffixes", "-out,-in", str(calls), env=env)
    assert "queued 0 recordings (3 already waiting)" in again.stdout  # the queueing lock: not twice
    options = ["--until-done", "--poll", "0.5", "--heartbeat", "0.5", "--stalled-after", "3", "--json"]
    workers = [running("audit-worker", *options, env=env) for _ in range(2)]
    for worker in workers:
        assert worker.finish(150) == 0, worker.err
    audited = [Path(row["file"]).name for worker in workers for row in worker.rows()]
    assert sorted(audited) == ["a.wav", "b.wav", "c-out.wav"]  # every one, by one worker only
    assert all(row["ok"] for worker in workers for row in worker.rows())
    assert len(stored(url)) == 3
    assert [(status, events) for _, status, events in queue_jobs(url)] == [
        ("succeeded", ["deferred", "started", "succeeded"])
    ] * 3


@pytest.mark.postgres
def test_a_worker_killed_mid_file_leaves_it_audited_once(
    tmp_path: Path, environment: Callable[[str], dict[str, str]], postgres_server, running
) -> None:
    """SIGKILL while a recording is being recognised: its heartbeat stops, another worker puts the job back and
    audits the file from the start. One stored call, one result, and the whole recording in it."""
    url = postgres_server.new_database()
    env = environment(url)
    upgraded(url, env)
    folder = tmp_path / "long"
    long = write(folder / "long.wav", stereo(["r09"], ["r14"]))  # 13.1 s
    short = write(folder / "short.wav", stereo(["r04"], ["r05"]))
    for recording in (long, short):  # the long one first: the first a worker takes
        assert contactcenter("audit", "--enqueue", str(recording), env=env).returncode == 0
    timing = ["--poll", "0.5", "--heartbeat", "0.5", "--stalled-after", "2"]
    doomed = running("audit-worker", *timing, "--json", env=env)
    assert wait_until(lambda: any(line == f"auditing {long}" for line in doomed.err), 60), doomed.err
    doomed.process.send_signal(signal.SIGKILL)
    assert doomed.finish(10) == -signal.SIGKILL
    assert doomed.rows() == []  # it died mid-file: nothing audited, nothing said
    survivor = running("audit-worker", *timing, "--until-done", "--json", env=env)
    assert survivor.finish(150) == 0, survivor.err
    assert sorted(Path(row["file"]).name for row in survivor.rows()) == ["long.wav", "short.wav"]
    calls = stored(url)
    assert sorted(v[0] for v in calls.values()) == ["long.wav", "short.wav"]  # one row each
    [audited] = [v for v in calls.values() if v[0] == "long.wav"]
    assert audited[1] == pytest.approx(13.1, abs=0.05)
    jobs = dict((files, (status, events)) for files, status, events in queue_jobs(url))
    assert jobs["long.wav"] == (
        "succeeded",
        ["deferred", "started", "scheduled", "deferred_for_retry", "started", "succeeded"],
    )
    assert jobs["short.wav"] == ("succeeded", ["deferred", "started", "succeeded"])


# --------------------------------------------------------------------------------------------- watching a folder


def test_watch_takes_what_a_pbx_drops_once_it_is_complete(
    calls: Path, environment: Callable[[str], dict[str, str]], tmp_path: Path, running
) -> None:
    """A pair of leg files already there is audited; a file written while the watch runs is not taken while
    half written and held open, even once its size has stopped changing, and is audited whole when closed."""
    folder = tmp_path / "pbx"
    for name in ("c-out.wav", "c-in.wav"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes((calls / name).read_bytes())
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    env = environment(url)
    upgraded(url, env)
    args = ["audit", "--watch", "--leg-suffixes", "-out,-in", "--settle", "0.3", "--poll", "0.1", "--json"]
    watch = running(*args, "--max-files", "2", str(folder), env=env)
    assert wait_until(lambda: len(watch.rows()) == 1, 90), watch.err
    assert Path(watch.rows()[0]["file"]).name == "c-out.wav"
    late = stereo(["r08"], ["r07"])
    with soundfile.SoundFile(folder / "late.wav", "w", RATE, 2, "PCM_16") as writer:
        writer.write(late[: late.shape[0] // 2])
        writer.flush()
        waiting = f"waiting for {folder / 'late.wav'}: still open by a process (the writer has not closed it)"
        assert wait_until(lambda: waiting in watch.err, 30), watch.err  # its size has settled; not taken
        assert len(watch.rows()) == 1
        writer.write(late[late.shape[0] // 2 :])
    assert watch.finish(90) == 0, watch.err
    _, second = watch.rows()
    assert Path(second["file"]).name == "late.wav" and second["ok"]
    assert second["duration_s"] == pytest.approx(late.shape[0] / RATE, abs=0.05)  # the whole recording
    assert sorted(v[0] for v in stored(url).values()) == ["c-out.wav", "late.wav"]
    # a watch started again (from cron, --once) leaves alone what is stored and stops by itself
    again = contactcenter(*args, "--once", str(folder), env=env, timeout=60)
    assert again.returncode == 0 and again.stdout == "", again.stderr
    assert len(stored(url)) == 2


def test_a_watch_waits_for_both_legs_of_a_pair(tmp_path: Path) -> None:
    """One leg complete, the other still growing: the pair is not taken, nor the finished leg alone."""
    now = [0.0]
    told: list[tuple[str, str]] = []
    folder = tmp_path / "pbx"
    write(folder / "x-out.wav", clip("r01"))
    write(folder / "x-in.wav", clip("r02")[:4000])
    watch = FolderWatch(
        [folder], ("-out", "-in"), 1.0, waiting=lambda p, why: told.append((p.name, why)), clock=lambda: now[0]
    )
    assert watch.scan() == []  # first look: nothing has been seen to settle yet
    now[0] = 0.6
    write(folder / "x-in.wav", clip("r02")[:8000])
    assert watch.scan() == [] and told == [("x-in.wav", "still being written (its size is changing)")]
    now[0] = 1.2
    assert watch.scan() == []  # x-out settled, x-in not yet: the pair waits
    now[0] = 1.7
    assert watch.scan() == [(folder / "x-out.wav", folder / "x-in.wav")]
    now[0] = 5.0
    assert watch.scan() == []  # taken once
