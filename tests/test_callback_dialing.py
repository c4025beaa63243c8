"""[callbacks] auto_dial against real peers: the desk dials a SIPp callee through Kamailio when a callback
comes due, plays the callback opening, and records the outcome (reached: done; busy: tried again later)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.app import App
from contactcenter.scheduling.book import CallbackBook
from contactcenter.scheduling.dialer import CallbackDialer
from tests.factories import open_app
from tests.test_desk_calls import dialler, outside, start_callee  # noqa: F401  (fixture used by name)

pytestmark = pytest.mark.sip


@pytest.fixture
def callbacks_app(desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    opening = desk.parent / "scripts_zh" / "prompts" / "callback_opening.wav"
    soundfile.write(opening, 0.3 * np.sin(2 * np.pi * 500 * np.arange(8000) / 8000), 8000)
    app = open_app(desk, f"sqlite:///{tmp_path / 'store.db'}", monkeypatch)
    yield app
    app.close()


@pytest.mark.parametrize(("scenario", "outcome", "state"), [("uas_callee.xml", "answered", "done"),
                                                            ("uas_busy.xml", "busy", "pending")])
def test_a_due_callback_is_dialled_and_its_outcome_recorded(outside: dict, callbacks_app: App, scenario: str,
                                                            outcome: str, state: str) -> None:
    book = CallbackBook(callbacks_app.database, callbacks_app.settings)
    due = datetime.now(timezone.utc) - timedelta(seconds=1)
    callback = book.add(phone="9001", due_at=due, reason="次日回访", kind="next_day")
    peer = start_callee(outside, scenario)
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
