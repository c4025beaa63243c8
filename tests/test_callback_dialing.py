"""[callbacks] auto_dial against real peers: the desk dials a SIPp callee through Kamailio when a callback
comes due, plays the callback opening, and records the outcome (reached: done; busy: tried again later)."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import desk_environment, free_port
from contactcenter.app import App
from contactcenter.scheduling.book import CallbackBook
from contactcenter.scheduling.dialer import CallbackDialer
from tests.test_desk_calls import DEMO_DIR, SIP_DIR, dialler, outside  # noqa: F401  (fixture used by name)

pytestmark = pytest.mark.sip


@pytest.fixture
def callbacks_app(desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    opening = desk.parent / "scripts_zh" / "prompts" / "callback_opening.wav"
    soundfile.write(opening, 0.3 * np.sin(2 * np.pi * 500 * np.arange(8000) / 8000), 8000)
    for key, value in desk_environment(f"sqlite:///{tmp_path / 'store.db'}").items():
        monkeypatch.setenv(key, value)
    app = App(desk)
    app.database.upgrade()
    yield app
    app.close()


def callee(outside: dict, scenario: str) -> subprocess.Popen[str]:
    text = (SIP_DIR / scenario).read_text(encoding="utf-8").replace("@PCAP@", str(DEMO_DIR / "caller.pcap"))
    path = outside["tmp"] / scenario
    path.write_text(text, encoding="utf-8")
    process = subprocess.Popen(
        ["sipp", "-sf", str(path), "-i", "127.0.0.1", "-p", str(outside["callee_port"]), "-mi", "127.0.0.1",
         "-mp", str(free_port() & ~1), "-m", "1", "-timeout", "40", "-nostdin"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=outside["tmp"])
    time.sleep(0.3)
    return process


@pytest.mark.parametrize(("scenario", "outcome", "state"), [("uas_callee.xml", "answered", "done"),
                                                            ("uas_busy.xml", "busy", "pending")])
def test_a_due_callback_is_dialled_and_its_outcome_recorded(outside: dict, callbacks_app: App, scenario: str,
                                                            outcome: str, state: str) -> None:
    book = CallbackBook(callbacks_app.database, callbacks_app.settings)
    due = datetime.now(timezone.utc) - timedelta(seconds=1)
    callback = book.add(phone="9001", due_at=due, reason="次日回访", kind="next_day")
    peer = callee(outside, scenario)
    phone = dialler(outside)
    try:
        dialer = CallbackDialer(phone, callbacks_app.plugins.api_for("callbacks"), book, listen_seconds=2)
        assert dialer.dial(book.fire(callback.id)) == outcome
        peer.communicate(timeout=40)
    finally:
        phone.stop()
    record = book.get(callback.id)
    assert record.state == state and record.attempts == 1 and record.last_outcome == outcome
    if state == "pending":
        assert record.due_at >= due + timedelta(minutes=callbacks_app.settings.callbacks.retry_spacing_minutes)
    else:
        assert record.note.startswith("自动回访: answered")
    assert dialer.dial(record) == "taken"  # a callback no longer due is not dialled twice
