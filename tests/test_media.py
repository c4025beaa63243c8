"""The media pipeline: the streaming recorder and the fan-out of one call's frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.line import FRAME_SAMPLES, RATE
from contactcenter.media.call_media import CallMedia
from contactcenter.media.recorder import StreamingRecorder
from contactcenter.media.speech_intake import SpeechIntake
from contactcenter.telephony.pyvoip_adapter import DeskRTPClient

# isort: split
# After the adapter, which imports pyVoIP in the order 1.6.8 needs.
from pyVoIP import RTP


def frames_of(value: int, count: int) -> list[bytes]:
    return [np.full(FRAME_SAMPLES, value, dtype="<i2").tobytes() for _ in range(count)]


def test_the_recording_is_stereo_agent_left_customer_right(tmp_path: Path) -> None:
    recorder = StreamingRecorder(tmp_path / "call.wav", flush_seconds=0.05)
    agent, customer = frames_of(1000, 100), frames_of(-2000, 80)  # the customer's last 0.4 s never came
    writers = [
        threading.Thread(target=lambda leg=leg, frames=frames: [recorder.write(leg, f) for f in frames])
        for leg, frames in (("agent", agent), ("customer", customer))
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert recorder.close() == tmp_path / "call.wav"
    audio, rate = soundfile.read(str(tmp_path / "call.wav"), dtype="int16")
    assert rate == RATE and audio.shape == (100 * FRAME_SAMPLES, 2)
    assert (audio[:, 0] == 1000).all()
    assert (audio[: 80 * FRAME_SAMPLES, 1] == -2000).all() and (audio[80 * FRAME_SAMPLES :, 1] == 0).all()


def test_a_silent_far_end_is_padded_and_its_late_audio_does_not_shift_the_channels(tmp_path: Path) -> None:
    recorder = StreamingRecorder(tmp_path / "call.wav", flush_seconds=3600, max_skew_seconds=0.2)
    for frame in frames_of(500, 50):  # 1 s of the agent, nothing from the customer
        recorder.write("agent", frame)
    recorder._flush(final=False)  # what the flusher does each second
    assert recorder.seconds_written == pytest.approx(1.0)
    # the receiver then delivers the customer's gap (silence by RTP timestamp) and new audio
    for frame in frames_of(0, 50) + frames_of(-700, 25):
        recorder.write("customer", frame)
    for frame in frames_of(500, 25):
        recorder.write("agent", frame)
    recorder.close()
    audio, _ = soundfile.read(str(tmp_path / "call.wav"), dtype="int16")
    second = RATE
    assert audio.shape == (75 * FRAME_SAMPLES, 2)
    assert (audio[second:, 1] == -700).all()  # the customer's speech sits where it was said, beside the agent's
    assert (audio[:second, 1] == 0).all()


def test_sound_that_comes_instead_of_the_gaps_silence_is_kept(tmp_path: Path) -> None:
    """A sender that restarts its timeline delivers no silence for the gap: its speech must not be skipped."""
    recorder = StreamingRecorder(tmp_path / "call.wav", flush_seconds=3600, max_skew_seconds=0.2)
    for frame in frames_of(500, 50):
        recorder.write("agent", frame)
    recorder._flush(final=False)  # the customer's leg padded by 1 s
    for frame in frames_of(-700, 25):  # speech at once, no gap filled
        recorder.write("customer", frame)
    for frame in frames_of(500, 25):
        recorder.write("agent", frame)
    recorder.close()
    audio, _ = soundfile.read(str(tmp_path / "call.wav"), dtype="int16")
    assert (audio[:, 1] == -700).sum() == 25 * FRAME_SAMPLES  # all of it, after the padding


def test_a_timestamp_leap_does_not_fill_gigabytes_of_silence() -> None:
    """A hostile or restarted RTP sender: a jump of 2^30 samples is followed, not filled."""
    client = DeskRTPClient({0: RTP.PayloadType.PCMU}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV)
    received: list[bytes] = []
    client.on_received = received.append

    def packet(timestamp: int, code: int) -> RTP.RTPMessage:
        header = b"\x80\x00" + (1).to_bytes(2, "big") + timestamp.to_bytes(4, "big") + (7).to_bytes(4, "big")
        return RTP.RTPMessage(header + bytes([code]) * FRAME_SAMPLES, {0: RTP.PayloadType.PCMU})

    for k in range(5):
        client.parse_pcmu(packet(1000 + k * FRAME_SAMPLES, 0x80))
    for k in range(5):
        client.parse_pcmu(packet(1000 + (1 << 30) + k * FRAME_SAMPLES, 0x00))
    client.push_received(flush=True)
    assert client.timestamp_jumps == 1 and len(client._in) == 0
    assert len(received) == 10  # 200 ms in, 200 ms out: nothing invented in between
    loud = [np.abs(np.frombuffer(frame, dtype="<i2")).max() for frame in received]
    assert all(level > 30000 for level in loud[5:])  # the second stretch, right after the first


def test_rtp_header_extensions_padding_and_odd_events_are_not_heard_as_audio() -> None:
    """RFC 3550 5.1/5.3.1: a header extension and padding are not payload (pyVoIP decoded them as audio, a click
    in every packet from a peer that adds them); a CSRC list is skipped; a telephone-event past the 16 digits
    and a packet cut short are dropped, not raised out of the receiver."""
    client = DeskRTPClient(
        {0: RTP.PayloadType.PCMU, 101: RTP.PayloadType.EVENT}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV
    )
    received: list[bytes] = []
    digits: list[str] = []
    client.on_received = received.append
    client.dtmf = digits.append
    silence_code = 0xFF  # PCMU for 0
    audio = bytes([silence_code]) * FRAME_SAMPLES

    def header(first: int, timestamp: int, payload_type: int = 0, marker: bool = False) -> bytes:
        return (
            bytes([first, payload_type | (0x80 if marker else 0)])
            + (1).to_bytes(2, "big")
            + (timestamp.to_bytes(4, "big") + (7).to_bytes(4, "big"))
        )

    extension = b"\xbe\xde" + (2).to_bytes(2, "big") + b"\x00" * 8  # two 32-bit words of extension
    client.receive_packet(header(0x90, 1000) + extension + audio)  # X set
    client.receive_packet(header(0xA0, 1160) + audio + b"\x00\x00\x00\x04")  # P set: 4 octets of padding
    client.receive_packet(header(0x82, 1320) + b"\x00" * 8 + audio)  # two CSRCs
    client.receive_packet(header(0x80, 1480, 101, marker=True) + bytes([16, 0x80, 0, 160]))  # flash: no digit
    client.receive_packet(header(0x80, 1480, 101, marker=True) + bytes([5, 0x80, 0, 160]))
    client.receive_packet(header(0x90, 1640)[:12])  # an extension announced, not there
    client.receive_packet(b"\x80\x00\x00")  # shorter than a header
    client.push_received(flush=True)
    assert b"".join(received) == bytes(3 * FRAME_SAMPLES * 2)  # 60 ms, all of it silence: nothing else got in
    assert digits == ["5"]


def test_memory_stays_flat_and_the_file_is_valid_between_flushes(tmp_path: Path) -> None:
    recorder = StreamingRecorder(tmp_path / "call.wav", flush_seconds=3600)
    for _ in range(5):
        for frame in frames_of(300, 50):
            recorder.write("agent", frame)
            recorder.write("customer", frame)
        recorder._flush(final=False)
        assert all(len(buffer) == 0 for buffer in recorder._pending.values())
        with wave.open(str(tmp_path / "call.wav")) as reader:  # readable while the call goes on
            assert reader.getnframes() == recorder.seconds_written * RATE
    recorder.close()


def test_a_failing_sink_is_dropped_and_the_others_go_on(tmp_path: Path) -> None:
    class BrokenEarpiece:
        calls = 0

        def from_line(self, frame: bytes) -> None:
            BrokenEarpiece.calls += 1
            raise OSError("device unplugged")

    recorder = StreamingRecorder(tmp_path / "call.wav")
    media = CallMedia(recorder=recorder)
    media.earpiece = BrokenEarpiece()
    for frame in frames_of(100, 10):
        media.customer_frame(frame)
        media.agent_frame(frame)
    media.key_pressed("5")
    assert BrokenEarpiece.calls == 1 and media.dtmf == ["5"]
    assert media.elapsed_s == pytest.approx(0.2)
    media.close()
    audio, _ = soundfile.read(str(tmp_path / "call.wav"), dtype="int16")
    assert audio.shape == (10 * FRAME_SAMPLES, 2) and (audio == 100).all()


class FakeCallSpeech:
    """A fake in a call's CallSpeech's place: keeps what is pushed, and on which thread, and fails or stalls on
    demand, which the real one (Vosk workers behind it) cannot be made to do at a chosen frame. The real path,
    RTP threads → intake → CallSpeech → verdict, runs in test_headset_calls.py."""

    def __init__(self, fail_at: int | None = None, stall: threading.Event | None = None) -> None:
        self.pushed: list[tuple[str, bytes, str]] = []
        self.fail_at = fail_at
        self.stall = stall

    def push(self, leg: str, pcm: bytes, block: bool = False) -> bool:
        if self.stall is not None:
            self.stall.wait(10)
        if len(self.pushed) == self.fail_at:
            self.fail_at = None
            raise RuntimeError("the recogniser's queue broke")
        self.pushed.append((leg, pcm, threading.current_thread().name))
        return True


def test_speech_is_pushed_off_the_rtp_threads_in_order_and_complete_when_the_call_ends() -> None:
    """The RTP threads only hand frames in; the intake's own thread pushes them, each leg in order, and the end
    of the call waits for the last of them. A stalled recognition side does not hold up the RTP threads."""
    stall = threading.Event()
    speech = FakeCallSpeech(stall=stall)
    intake = SpeechIntake()
    media = CallMedia(speech=speech, intake=intake)  # type: ignore[arg-type]
    agent, customer = frames_of(1, 50), frames_of(2, 50)
    handed_in = threading.Event()

    def rtp_thread() -> None:
        for a, c in zip(agent, customer, strict=True):
            media.agent_frame(a)
            media.customer_frame(c)
        handed_in.set()

    threading.Thread(target=rtp_thread, name="call media out").start()
    assert handed_in.wait(5)  # while every push is stalled
    assert speech.pushed == []
    stall.set()
    assert media.speech_caught_up()
    assert [f for leg, f, _ in speech.pushed if leg == "agent"] == agent
    assert [f for leg, f, _ in speech.pushed if leg == "customer"] == customer
    assert {thread for _, _, thread in speech.pushed} == {"speech intake"}


def test_a_failing_speech_push_switches_speech_off_for_that_call_only(caplog: pytest.LogCaptureFixture) -> None:
    intake = SpeechIntake()
    broken, fine = FakeCallSpeech(fail_at=3), FakeCallSpeech()
    first = CallMedia(speech=broken, intake=intake)  # type: ignore[arg-type]
    second = CallMedia(speech=fine, intake=intake)  # type: ignore[arg-type]
    for frame in frames_of(5, 10):
        first.agent_frame(frame)
        second.agent_frame(frame)
    assert first.speech_caught_up() and second.speech_caught_up()
    assert len(broken.pushed) == 3 and len(fine.pushed) == 10
    assert "the call's speech failed and is switched off for this call" in caplog.text


KILLED_RECORDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from contactcenter.media.recorder import StreamingRecorder
    recorder = StreamingRecorder(__import__("pathlib").Path(sys.argv[1]))
    started = time.monotonic()
    sent = 0
    while True:  # two legs in real time, as the RTP threads deliver them, until killed
        value = sent % 1000
        frame = np.full(160, value, dtype="<i2").tobytes()
        recorder.write("agent", frame)
        recorder.write("customer", frame)
        sent += 1
        if sent == 50 * 3:
            print("3 s", flush=True)
        time.sleep(max(0.0, started + sent * 0.02 - time.monotonic()))
""")


def test_a_recording_killed_mid_write_plays_up_to_the_last_flush(tmp_path: Path) -> None:
    """kill -9 of the recording process: no repair needed, at most the last second lost."""
    path = tmp_path / "killed.wav"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RECORDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert process.stdout is not None and process.stdout.readline() == "3 s\n"
    process.send_signal(signal.SIGKILL)
    process.wait()
    audio, rate = soundfile.read(str(path), dtype="int16")
    assert rate == RATE and audio.shape[0] >= 2 * RATE  # at least 2 of the 3 s written
    expected = np.repeat(np.arange(audio.shape[0] // FRAME_SAMPLES) % 1000, FRAME_SAMPLES)
    assert (audio[: len(expected), 0] == expected).all() and (audio[: len(expected), 1] == expected).all()
