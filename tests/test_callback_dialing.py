"""[callbacks] auto_dial against real peers: the desk dials a SIPp callee through Kamailio when a callback
comes due, plays the callback opening, and records the outcome (reached: done; busy: tried again later).
The call it placed goes the way of a call taken: recorded, stored (as outbound) and published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from contactcenter.app import App
from contactcenter.callbacks.book import CallbackBook
from contactcenter.scheduling.dialer import CallbackDialer
from contactcenter.storage.models import Call, Ticket
from contactcenter.telephony.desk import Desk
from tests.helpers.factories import open_app
from tests.helpers.sip import dialler, start_callee

pytestmark = pytest.mark.sip


@pytest.fixture
def callbacks_app(desk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    opening = desk.parent / "scripts_zh" / "prompts" / "callback_opening.wav"
    soundfile.write(opening, 0.3 * np.sin(2 * np.pi * 500 * np.arange(8000) / 8000), 8000)
    app = open_app(desk, f"sqlite:///{tmp_path / 'store.db'}", monkeypatch)
    yield app
    app.close()


@pytest.mark.parametrize(
    ("scenario", "outcome", "state"), [("uas_callee.xml", "answered", "done"), ("uas_busy.xml", "busy", "pending")]
)
def test_a_due_callback_is_dialled_and_its_outcome_recorded(
    outside: dict, callbacks_app: App, scenario: str, outcome: str, state: str
) -> None:
    book = CallbackBook(callbacks_app.database, callbacks_app.settings)
    due = datetime.now(UTC) - timedelta(seconds=1)
    callback = book.add(phone="9001", due_at=due, reason="次日回访", kind="next_day")
    peer = start_callee(outside, scenario)
    phone = dialler(outside)
    desk = Desk(callbacks_app.settings, callbacks_app.database, callbacks_app.plugins.publish, None, None)
    desk.phone = phone
    try:
        callbacks_app.plugins.attach_phone(desk)  # as `run` does: plugins place calls through the desk
        dialer = CallbackDialer(callbacks_app.plugins.api_for("callbacks"), listen_seconds=2)
        assert dialer.dial(book.fire(callback.id)) == outcome
        peer.communicate(timeout=40)
        assert desk.wait_until_idle(30)
    finally:
        phone.stop()
    callbacks_app.plugins.bus.drain()
    with callbacks_app.database.session() as session:
        calls = session.scalars(select(Call)).all()
        tickets = session.scalars(select(Ticket)).all()
    if outcome == "answered":
        [call] = calls  # the callback's own call, stored like a call taken
        assert (call.direction, call.disposition, call.remote_number) == ("outbound", "completed", "9001")
        recording, rate = soundfile.read(str(Path(callbacks_app.settings.general.data_dir) / call.recording_path))
        opening = recording[:rate, 0]
        assert rate == 8000 and np.sqrt(np.mean(opening**2)) > 0.1  # the agent leg: the opening was played
        assert tickets == []  # it follows up a case: no new ticket, so no new callback either
    else:
        assert calls == []  # busy: nothing was said, nothing to store
    record = book.get(callback.id)
    assert record.state == state and record.attempts == 1 and record.last_outcome == outcome
    if state == "pending":
        assert record.due_at >= due + timedelta(minutes=callbacks_app.settings.callbacks.retry_spacing_minutes)
    else:
        assert record.note.startswith("自动回访: answered")
    assert dialer.dial(record) == "taken"  # a callback no longer due is not dialled twice
