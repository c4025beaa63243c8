"""One call's audio: both legs pushed in from the RTP threads, fanned out to the recorder, the speech and
the headset. Nothing polls.

The path of one 20 ms frame, and its copies before Vosk (at most three, as the architecture asks):

* customer leg: RTP packet → G.711 decoded straight into the receiver's jitter buffer (copy 1) → the frame
  taken out of it once it is in order (copy 2) → :meth:`CallMedia.customer_frame` on the RTP receive thread
  → the same ``bytes`` object to the recorder's pending buffer, the leg's speech queue and the headset.
* agent leg: the RTP sender builds each frame it sends (queued prompt + headset microphone, mixed) →
  :meth:`CallMedia.agent_frame` on the RTP send thread → the same fan-out (silence to the speech while on
  hold: hold music is not the agent speaking).
* speech: not pushed on the RTP threads but handed to the speech intake (speech_intake.py), whose thread of
  normal priority pushes it to the leg's stream a moment later; the recogniser's worker gathers the admitted
  frames into 100 ms units for Vosk (copy 3).

A sink that fails is logged once and dropped; the call and the other sinks go on.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from contactcenter.audio.line import FRAME_SECONDS, SILENT_FRAME, Leg
from contactcenter.media.recorder import StreamingRecorder
from contactcenter.media.speech_intake import SPEECH_INTAKE, SpeechIntake
from contactcenter.speech.live import CallSpeech

log = logging.getLogger(__name__)


class Earpiece(Protocol):
    """Where the customer's audio goes for the agent to hear (the headset bridge)."""

    def from_line(self, frame: bytes) -> None: ...


class CallMedia:
    """The media of one call; its clock is the agent leg, one frame per packet the caller is sent."""

    def __init__(
        self,
        recorder: StreamingRecorder | None = None,
        speech: CallSpeech | None = None,
        intake: SpeechIntake = SPEECH_INTAKE,
    ) -> None:
        self.recorder = recorder
        self.speech = speech
        self.intake = intake
        self.earpiece: Earpiece | None = None  # the headset, while the call has it
        self.held = False
        self.agent_frames = 0
        self.customer_frames = 0
        self.dtmf: list[str] = []
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    @property
    def elapsed_s(self) -> float:
        """Call time since the answer, on the audio's own clock."""
        return self.agent_frames * FRAME_SECONDS

    # ------------------------------------------------------------------------------ from the RTP threads

    def customer_frame(self, frame: bytes) -> None:
        """The customer's next 20 ms (RTP receive thread)."""
        self.customer_frames += 1
        self._fan_out("customer", frame, frame)
        earpiece = self.earpiece  # once: the call thread may take the headset away meanwhile
        if earpiece is not None and "headset" not in self._failed:
            try:
                earpiece.from_line(frame)
            except Exception:
                self._sink_failed("headset")

    def agent_frame(self, frame: bytes) -> None:
        """The 20 ms the customer was just sent (RTP send thread)."""
        self.agent_frames += 1
        self._fan_out("agent", frame, SILENT_FRAME if self.held else frame)

    def key_pressed(self, digit: str) -> None:
        """A DTMF digit from the customer (RFC 4733)."""
        with self._lock:
            self.dtmf.append(digit)

    # --------------------------------------------------------------------------------------- the call side

    def mark_event(self, name: str) -> float:
        """Something the rules are timed from happened now (hold_start, hold_end, ...); its call time."""
        at_s = self.elapsed_s
        if self.speech is not None:
            self.speech.mark_event(name, at_s)
        return at_s

    def speech_caught_up(self) -> bool:
        """The RTP threads are done with the call: wait until the speech has every frame they handed in (before
        it is finished). False if the intake did not get there in time (the log says so)."""
        if self.speech is None or self.intake.drain():
            return True
        log.error("the call's last audio did not reach recognition in time; its speech is finished without it")
        return False

    def close(self) -> Path | None:
        """The call is over: the recording is finished; its path (None if there is none)."""
        self.earpiece = None
        return self.recorder.close() if self.recorder is not None else None

    # ------------------------------------------------------------------------------------------- internals

    def _fan_out(self, leg: Leg, recorded: bytes, heard: bytes) -> None:
        if self.recorder is not None and "recorder" not in self._failed:
            try:
                self.recorder.write(leg, recorded)
            except Exception:
                self._sink_failed("recorder")
        if self.speech is not None and "speech" not in self._failed:
            self.intake.put(self._push_speech, leg, heard)  # pushed off this real-time thread

    def _push_speech(self, leg: Leg, frame: bytes) -> None:
        """On the intake's thread."""
        if self.speech is None or "speech" in self._failed:
            return
        try:
            self.speech.push(leg, frame)
        except Exception:
            self._sink_failed("speech")

    def _sink_failed(self, sink: str) -> None:
        with self._lock:
            first = sink not in self._failed
            self._failed.add(sink)
        if first:
            log.exception("the call's %s failed and is switched off for this call; the call goes on", sink)
