"""The desk's handling of one incoming call, in the call's own thread, from the first ring to the store.

Ring policy (R1): answer at ring ``[ring] answer_after_rings`` counted from the INVITE; answering later than
``apology_after_rings`` rings (agent busy, or policy) plays the apology greeting instead. A caller who hangs
up while it rings is recorded as abandoned. Once answered, the greeting plays, the caller's audio goes to
the speech monitor every 20 ms and the desk's own audio is the agent leg, until either side hangs up; the
call is then stored and ``call_ended`` published. Nothing a plugin, the recogniser or the database does can
drop the call: each is isolated by the layer that owns it.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile

from contactcenter.audio.devices import HeadsetError
from contactcenter.audio.headset import Headset, HeadsetBridge
from contactcenter.storage.call_end import end_call
from contactcenter.speech.rule_book import RuleBook
from contactcenter.records import CallRecord, ComplianceReport
from contactcenter.settings import Settings
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.records import CallSpeechOutcome
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.database import Database
from contactcenter.audio.prompts import Prompts
from contactcenter.telephony.softphone import CallNotRinging, IncomingCall

log = logging.getLogger(__name__)
FRAME_SECONDS = 0.02
FINISHED_KEPT = 1000  # recent calls kept in memory for the display; the store has them all
SPEECH_CATCH_UP_SECONDS = 1800.0  # an overloaded recogniser may finish a call's legs long after it ended
Publish = Callable[..., None]


@dataclass
class DeskCall:
    """What the desk knows about a call: shown on the terminal while it lasts, kept after it ends."""

    call: IncomingCall
    rings: int = 0
    answered_at: datetime | None = None
    dtmf: list[str] = field(default_factory=list)
    record: CallRecord | None = None
    caller_audio: list[bytes] = field(default_factory=list)
    desk_audio: list[bytes] = field(default_factory=list)
    recording: Path | None = None
    speech: CallSpeech | None = None
    bridge: HeadsetBridge | None = None  # the agent's headset, while this call has it


def write_recording(path: Path, desk_audio: list[bytes], caller_audio: list[bytes]) -> Path:
    """A stereo WAV of the call: the desk (agent) on the left, the caller on the right, 8 kHz."""
    left = np.frombuffer(b"".join(desk_audio), dtype="<i2")
    right = np.frombuffer(b"".join(caller_audio), dtype="<i2")
    length = max(len(left), len(right))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(left), 0] = left
    stereo[: len(right), 1] = right
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), stereo, 8000, subtype="PCM_16")
    return path


class Desk:
    """Handles incoming calls for one extension."""

    def __init__(self, settings: Settings, database: Database | None, publish: Publish | None,
                 monitor: SpeechMonitor | None, rules: RuleSet | RuleBook | None,
                 on_change: Callable[[str, DeskCall], None] | None = None,
                 headset: Headset | None = None) -> None:
        self.settings = settings
        self.database = database
        self.publish = publish
        self.monitor = monitor
        self.rules = rules
        self.prompts = Prompts(settings.scripts.prompts_dir)
        self.on_change = on_change
        self.headset = headset if headset is not None and headset.available else None
        self.active: dict[str, DeskCall] = {}
        self.finished: collections.deque[DeskCall] = collections.deque(maxlen=FINISHED_KEPT)
        self._lock = threading.Condition()

    # --------------------------------------------------------------------------------------- the call thread

    def handle(self, call: IncomingCall) -> None:
        desk_call = DeskCall(call)
        with self._lock:
            self.active[call.sip_call_id] = desk_call
        try:
            self._handle(desk_call)
        finally:
            with self._lock:
                self.active.pop(call.sip_call_id, None)
                desk_call.caller_audio, desk_call.desk_audio = [], []  # kept in the recording, not in memory
                self.finished.append(desk_call)
                self._lock.notify_all()

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no call is in progress (shutdown, tests); False if calls remain after ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: not self.active, timeout)

    def _record(self, call: IncomingCall, **changes: object) -> CallRecord:
        values = dict(sip_call_id=call.sip_call_id, direction="inbound", remote_number=call.remote_number,
                      caller_name=call.caller_name, agent_extension=self.settings.sip.user,
                      invited_at=call.invited_at, ringing_at=call.invited_at)
        values.update(changes)
        return CallRecord(**values)  # type: ignore[arg-type]

    def _emit(self, hook: str, **arguments: object) -> None:
        if self.publish is not None:
            self.publish(hook, **arguments)

    def _changed(self, what: str, desk_call: DeskCall) -> None:
        if self.on_change is not None:
            try:
                self.on_change(what, desk_call)
            except Exception:
                log.exception("display of call %s failed", desk_call.call.sip_call_id)

    def _handle(self, desk_call: DeskCall) -> None:
        call = desk_call.call
        ring = self.settings.ring
        self._emit("call_ringing", call=self._record(call))
        self._changed("ringing", desk_call)
        if isinstance(self.rules, RuleBook):
            self.rules.refresh_soon()  # an admin's changes to the rules, read while it rings
        answer_at = call.invited_at.timestamp() + ring.answer_after_rings * ring.ring_period_seconds
        if call.ended.wait(timeout=max(0.0, answer_at - time.time())) or not call.ringing:
            self._abandoned(desk_call)
            return
        claimed = None
        if self.headset is not None:
            claimed = self.headset.claim(call.ended)  # waits while the agent is on another call
            if claimed is None:
                self._abandoned(desk_call)
                return
        try:
            self._answer(desk_call, claimed)
        finally:
            self._release_headset(desk_call, claimed)

    def _answer(self, desk_call: DeskCall, claimed: HeadsetBridge | None) -> None:
        call = desk_call.call
        ring = self.settings.ring
        try:
            call.answer()
        except CallNotRinging:  # the caller hung up in the same instant
            self._abandoned(desk_call)
            return
        answered = datetime.now(timezone.utc)
        elapsed = (answered - call.invited_at).total_seconds()
        desk_call.rings = max(1, math.ceil(elapsed / ring.ring_period_seconds - 0.05))
        desk_call.answered_at = answered
        record = self._record(call, answered_at=answered, rings_before_answer=desk_call.rings)
        self._emit("call_answered", call=record)
        self._changed("answered", desk_call)
        speech = desk_call.speech = self._start_speech(call, record, desk_call.rings)
        call.on_audio_sent(lambda frame: self._desk_frame(desk_call, speech, frame))
        self._bridge_headset(desk_call, claimed)
        late = desk_call.rings > ring.apology_after_rings
        greeting = self.prompts.line_audio("late_apology" if late else "greeting")
        if greeting is not None:
            call.play(greeting)
        self._pump(desk_call, speech)
        self._release_headset(desk_call, claimed)  # free for the next call before the analysis catches up
        ended = datetime.now(timezone.utc)
        hung_up_first = "customer" if call.hung_up_by == "customer" else ("agent" if call.hung_up_by else "system")
        record = record.model_copy(update={"ended_at": ended, "hung_up_first": hung_up_first,
                                           "disposition": "completed"})
        outcome = self._finish_speech(speech, (ended - answered).total_seconds(), hung_up_first)
        if self.settings.general.record_calls:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", call.sip_call_id)[:120] + ".wav"
            try:
                desk_call.recording = write_recording(Path(self.settings.general.data_dir) / "recordings" / name,
                                                      desk_call.desk_audio, desk_call.caller_audio)
            except (OSError, RuntimeError) as exc:
                log.error("recording of call %s not written: %s", call.sip_call_id, exc)
        if desk_call.recording is not None:
            data_dir = Path(self.settings.general.data_dir)
            record = record.model_copy(update={"recording_path": str(desk_call.recording.relative_to(data_dir))})
        desk_call.record = self._end(record, outcome)
        self._changed("ended", desk_call)

    def _abandoned(self, desk_call: DeskCall) -> None:
        call = desk_call.call
        record = self._record(call, ended_at=datetime.now(timezone.utc), hung_up_first="customer",
                              disposition="abandoned")
        desk_call.record = self._end(record, CallSpeechOutcome([], ComplianceReport(), []))
        self._changed("abandoned", desk_call)

    def _end(self, record: CallRecord, outcome: CallSpeechOutcome) -> CallRecord:
        spool = Path(self.settings.general.data_dir) / "spool"
        return end_call(record, outcome, self.database, spool, self.publish)

    # ------------------------------------------------------------------------------------------------ media

    def _start_speech(self, call: IncomingCall, record: CallRecord, rings: int) -> CallSpeech | None:
        if self.monitor is None or self.rules is None:
            return None
        rules = self.rules.current() if isinstance(self.rules, RuleBook) else self.rules
        facts = CallFacts(rings_before_answer=rings, apology_after_rings=self.settings.ring.apology_after_rings)
        return CallSpeech(self.monitor, rules, record, facts, rate=8000, publish=self.publish,
                          redact=self.settings.speech.redact_numbers,
                          partial_stable_s=self.settings.speech.partial_stable_ms / 1000)

    def _bridge_headset(self, desk_call: DeskCall, bridge: HeadsetBridge | None) -> None:
        """Put the call on the agent's headset; if the sound card fails, the call goes on unattended."""
        if bridge is None:
            return
        try:
            bridge.open()
        except HeadsetError as exc:
            log.error("call %s stays unattended: %s", desk_call.call.sip_call_id, exc)
            return
        desk_call.bridge = bridge
        desk_call.call.send_live(bridge.line_frame)

    def _release_headset(self, desk_call: DeskCall, bridge: HeadsetBridge | None) -> None:
        if bridge is None or self.headset is None:
            return
        desk_call.call.send_live(None)
        desk_call.bridge = None
        self.headset.release(bridge)

    @staticmethod
    def _desk_frame(desk_call: DeskCall, speech: CallSpeech | None, frame: bytes) -> None:
        """Every 20 ms the caller is sent (from the RTP thread): the agent leg, recorded and recognised.
        Hold music is recorded but not recognised (music is not the agent speaking)."""
        desk_call.desk_audio.append(frame)
        if speech is not None:
            bridge = desk_call.bridge  # read once: the call thread may release it meanwhile
            held = bridge is not None and bridge.held
            speech.push("agent", bytes(len(frame)) if held else frame)

    # ------------------------------------------------------------------------------------ the agent's keys

    def headset_call(self) -> DeskCall | None:
        """The call on the agent's headset, if any."""
        with self._lock:
            return next((c for c in self.active.values() if c.bridge is not None), None)

    def set_mute(self, muted: bool) -> bool:
        """Mute or unmute the agent's microphone on the headset call; False if there is none."""
        desk_call = self.headset_call()
        bridge = desk_call.bridge if desk_call is not None else None  # once: the call may end meanwhile
        if bridge is None:
            return False
        bridge.muted = muted
        self._changed("muted" if muted else "unmuted", desk_call)
        return True

    def set_hold(self, held: bool) -> bool:
        """Hold or resume the headset call: hold music (or silence) to the caller, and the hold_start /
        hold_end events the R6 rules (请稍等 before, 让您久等了 after) are timed from."""
        desk_call = self.headset_call()
        bridge = desk_call.bridge if desk_call is not None else None  # once: the call may end meanwhile
        if bridge is None or bridge.held == held:
            return False
        at_s = len(desk_call.desk_audio) * FRAME_SECONDS  # call time, on the audio's own clock
        bridge.held = held
        if desk_call.speech is not None:
            desk_call.speech.mark_event("hold_start" if held else "hold_end", at_s)
        self._changed("held" if held else "resumed", desk_call)
        return True

    def hang_up(self) -> bool:
        """The agent hangs up the headset call (the standard says: let the customer hang up first)."""
        desk_call = self.headset_call()
        if desk_call is None:
            return False
        desk_call.call.hangup()
        return True

    def _pump(self, desk_call: DeskCall, speech: CallSpeech | None) -> None:
        """Every 20 ms: the caller's audio to the recogniser, DTMF to the log, until the call ends."""
        call = desk_call.call
        started = time.monotonic()
        tick = 0
        while not call.ended.is_set():
            while (frame := call.read_frame()) is not None:
                desk_call.caller_audio.append(frame)
                if speech is not None:
                    speech.push("customer", frame)
                if desk_call.bridge is not None:
                    desk_call.bridge.from_line(frame)
            digits = call.read_dtmf()
            if digits:
                desk_call.dtmf.extend(digits)
            tick += 1
            call.ended.wait(timeout=max(0.0, started + tick * FRAME_SECONDS - time.monotonic()))
        while (frame := call.read_frame(flush=True)) is not None:
            desk_call.caller_audio.append(frame)
            if speech is not None:
                speech.push("customer", frame)

    @staticmethod
    def _finish_speech(speech: CallSpeech | None, duration: float, hung_up_first: str) -> CallSpeechOutcome:
        """The call is over (its media and port are released); wait for recognition to catch up, however
        far behind an overloaded machine is, so the transcript is not lost."""
        if speech is None:
            return CallSpeechOutcome([], ComplianceReport(), [])
        try:
            return speech.finish(duration, hung_up_first, timeout=SPEECH_CATCH_UP_SECONDS)
        except TimeoutError:
            log.error("recognition still %.0f s behind after the call; stored without its transcript",
                      SPEECH_CATCH_UP_SECONDS)
        except Exception:
            log.exception("speech analysis of the call failed; the call is stored without it")
        return CallSpeechOutcome([], ComplianceReport(), [])
