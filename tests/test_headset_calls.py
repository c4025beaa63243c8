"""A real call on the agent's headset: SIPp calls through Kamailio, the desk answers, the caller's tone
plays in the earpiece (a PulseAudio null sink), the agent's microphone (a tone played into the other sink)
goes to the caller, hold and mute act on the line and the hold events reach the R6 rules."""

from __future__ import annotations

import threading

import pytest
import soundfile

from contactcenter.audio.headset import Headset
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.telephony.desk import Desk
from tests.helpers.settings import desk_settings
from tests.helpers.signals import dominant_frequency, rms_dbfs, tone
from tests.helpers.sip import extension_phone, sipp_call
from tests.helpers.sound import EARS, MIC, RATE, SoundServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip


def test_a_call_on_the_headset_with_hold(line: dict, sound_server: SoundServer, korean_model) -> None:
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    settings = desk_settings(
        line["desk_file"],
        line["url"],
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5"},
    )
    headset = Headset(settings.headset)
    assert headset.check(), headset.off_reason
    published: list[tuple[str, dict]] = []
    rules = load_rules(settings.scripts.rules, settings.company.names_said)
    desk = Desk(
        settings,
        line["database"],
        lambda hook, **a: published.append((hook, a)),
        SpeechMonitor(korean_model, workers=1),
        rules,
        headset=headset,
    )
    phone = extension_phone(line["registrar"].port, desk.handle, rtp_low=31000, rtp_high=31999)
    recorder = sound_server.record(f"{EARS}.monitor")
    microphone = sound_server.play(MIC, tone(1000, 20, RATE, level=0.3))
    results: list = []
    caller = threading.Thread(target=lambda: results.append(sipp_call(line, "uac_call.xml", talk_ms=14000)))
    caller.start()
    try:
        assert wait_until(lambda: desk.headset_call() is not None, 10, step=0.02)
        on_headset = desk.headset_call()
        media = on_headset.control.media
        assert media is not None
        # the greeting has started, then been played (the call is on the headset a moment before it starts)
        assert wait_until(lambda: on_headset.call.playing_seconds() > 0, 15, step=0.02)
        assert wait_until(lambda: on_headset.call.playing_seconds() == 0, 15, step=0.02)
        # 1.5 s of the microphone to the caller, then a 2 s hold: timed on the call's own audio clock (the
        # frames the caller is sent, which the hold events are timed by too), not on the test's wall clock
        talking_since = media.elapsed_s
        assert wait_until(lambda: media.elapsed_s >= talking_since + 1.5, 10, step=0.02)
        assert desk.current_control().hold(True)
        held_since = media.elapsed_s
        assert wait_until(lambda: media.elapsed_s >= held_since + 2.0, 10, step=0.02)
        assert desk.current_control().hold(False)
        caller.join(timeout=40)
        assert desk.wait_until_idle(60)
    finally:
        phone.stop()
        microphone.terminate()
        earpiece = sound_server.finish_recording(recorder)
    assert results and results[0].returncode == 0, results and results[0].stdout[-2000:]
    [done] = desk.finished
    assert headset.bridge is None  # free for the next call

    # The caller's 440 Hz tone was in the agent's ears.
    loud = [earpiece[i : i + RATE] for i in range(0, len(earpiece) - RATE, RATE // 2)]
    assert any(dominant_frequency(s, RATE) == pytest.approx(440, abs=3) and rms_dbfs(s) > -30 for s in loud)

    # The desk leg of the recording is what the caller heard: the microphone's 1 kHz, then silence on hold
    # (no hold music configured), then the microphone again.
    recording, rate = soundfile.read(str(done.recording), dtype="float64")
    desk_leg = recording[:, 0]
    seconds = [desk_leg[i : i + rate] for i in range(0, len(desk_leg) - rate, rate // 4)]
    talking = [dominant_frequency(s, rate) == pytest.approx(1000, abs=3) and rms_dbfs(s) > -20 for s in seconds]
    silent = [rms_dbfs(s) < -70 for s in seconds]
    first_silent = silent.index(True)
    assert any(talking[:first_silent]) and any(talking[first_silent:])
    assert sum(silent) >= 4  # at least a second and a half of the two-second hold is silent

    # The hold events reached the R6 rules: both hold rules were judged (and failed: nobody said the phrases).
    [report] = [a["report"] for hook, a in published if hook == "call_ended"]
    verdicts = {r.rule_id: r.passed for r in report.results}
    assert verdicts.get("hold_request") is False and verdicts.get("hold_return") is False
