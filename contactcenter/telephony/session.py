"""An answered call, taken or placed, from the answer to the store.

The session builds the call's media (streaming recorder and live speech), has the RTP threads push into it,
puts the call on the agent's headset, plays the opening prompt, waits for the end, then lets recognition
catch up and hands the call to the store (``call_ended`` is published there). Calls the desk places
(callbacks, surveys) go through the same steps, so they are recorded, transcribed, checked and stored too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from contactcenter.audio.devices import HeadsetError
from contactcenter.audio.headset import Headset, HeadsetBridge
from contactcenter.audio.line import RATE
from contactcenter.audio.prompts import Prompts
from contactcenter.media.call_media import CallMedia
from contactcenter.media.recorder import StreamingRecorder
from contactcenter.records import (
    NO_MODEL,
    NO_RULES,
    NOT_ANSWERED,
    RECOGNITION_BEHIND,
    RECOGNITION_FAILED,
    CallRecord,
    CallSpeechOutcome,
)
from contactcenter.settings import Settings
from contactcenter.speech.compliance import CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rule_book import RuleBook
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.call_end import end_call
from contactcenter.storage.database import Database
from contactcenter.telephony.call import Call
from contactcenter.telephony.control import CallControl

log = logging.getLogger(__name__)
SPEECH_CATCH_UP_SECONDS = 1800.0  # an overloaded recogniser may finish a call's legs long after it ended
Publish = Callable[..., None]


@dataclass
class DeskServices:
    """What every call of one desk shares: settings, the store, plugins' publish, speech, the headset."""

    settings: Settings
    database: Database | None
    publish: Publish | None
    monitor: SpeechMonitor | None
    rules: RuleSet | RuleBook | None
    headset: Headset | None
    prompts: Prompts = field(init=False)

    def __post_init__(self) -> None:
        self.prompts = Prompts(self.settings.scripts.prompts_dir)
        if self.headset is not None and not self.headset.available:
            self.headset = None

    def emit(self, hook: str, **arguments: object) -> None:
        if self.publish is not None:
            self.publish(hook, **arguments)

    def store(self, record: CallRecord, outcome: CallSpeechOutcome) -> CallRecord:
        spool = Path(self.settings.general.data_dir) / "spool"
        return end_call(record, outcome, self.database, spool, self.publish)


def recording_path(data_dir: Path, sip_call_id: str) -> Path:
    return data_dir / "recordings" / (re.sub(r"[^A-Za-z0-9_.-]", "_", sip_call_id)[:120] + ".wav")


class CallSession:
    """One answered call's media and wrap-up: :meth:`start` at the answer, :meth:`finish` (which returns when
    the call is over and stored) on the thread that waits for the end."""

    def __init__(
        self,
        services: DeskServices,
        call: Call,
        control: CallControl,
        record: CallRecord,
        facts: CallFacts,
        on_hung_up: Callable[[], None] | None = None,
        disposition: str = "completed",
        keep: Callable[[], bool] | None = None,
    ) -> None:
        self.services = services
        self.disposition = disposition  # stored when the call ends: completed, or overflow (the overflow desk)
        # asked at the end: False drops the call instead of storing it (the extra answer of a team call two
        # desks answered; its recording is deleted and nothing is published)
        self.keep = keep
        self.on_hung_up = on_hung_up  # the conversation is over (before recognition catches up and the store)
        self.call = call
        self.control = control
        self.record = record
        self.facts = facts
        self.media: CallMedia | None = None
        self.recording: Path | None = None
        self._bridge: HeadsetBridge | None = None
        self._speech: CallSpeech | None = None

    def start(self, bridge: HeadsetBridge | None, opening: str | None) -> None:
        """The call is answered: its media (recording, speech) fed by the RTP threads from now on, the headset
        ``bridge`` claimed for it put on (None: unattended), and the ``opening`` prompt queued."""
        call, services = self.call, self.services
        self._bridge = bridge
        self._speech = self._start_speech()
        media = self.media = CallMedia(self._start_recorder(), self._speech)
        call.attach_media(media)
        self.control.attach(media, self._bridge_headset(bridge, media))
        audio = services.prompts.line_audio(opening) if opening else None
        if audio is not None:
            call.play(audio)

    def finish(self) -> CallRecord:
        """Wait for the end of the call, free the headset at once, let recognition catch up, store it."""
        call, services, media = self.call, self.services, self.media
        assert media is not None, "start() first"
        answered = self.record.answered_at or datetime.now(UTC)
        call.ended.wait()
        call.detach_media()
        self._release_headset(self._bridge)
        ended = datetime.now(UTC)
        if self.on_hung_up is not None:
            try:
                self.on_hung_up()
            except Exception:
                log.exception("hang-up listener of call %s failed", call.sip_call_id)
        by = call.hung_up_by
        # who ended it: a blind transfer is the agent's act, but the hang-up order rule (R7) cannot judge a call
        # handed to a colleague, so it gets no verdict rather than a failure
        hung_up_first = {"customer": "customer", "agent": "agent", "transfer": "agent"}.get(by or "", "system")
        judged_order = None if by == "transfer" else hung_up_first
        media.speech_caught_up()  # what the RTP threads handed to recognition is in before it is finished
        outcome = self._finish_speech(self._speech, (ended - answered).total_seconds(), judged_order)
        disposition = self.disposition
        if call.not_connected:  # the caller never heard the answer: nothing to judge, never "completed"
            disposition, outcome = "not_connected", CallSpeechOutcome.not_checked(NOT_ANSWERED)
        self.recording = media.close()
        if self.keep is not None and not self.keep():
            if self.recording is not None:
                self.recording.unlink(missing_ok=True)
                self.recording = None
            log.info("call %s not stored: another desk answered it", call.sip_call_id)
            return self.record.model_copy(update={"ended_at": ended, "disposition": "duplicate"})
        update: dict[str, object] = {"ended_at": ended, "hung_up_first": hung_up_first, "disposition": disposition}
        if self.recording is not None:
            update["recording_path"] = str(self.recording.relative_to(Path(services.settings.general.data_dir)))
        return services.store(self.record.model_copy(update=update), outcome)

    # ------------------------------------------------------------------------------------------- internals

    def _start_speech(self) -> CallSpeech | None:
        services = self.services
        if services.monitor is None or services.rules is None:
            return None
        rules = services.rules.current() if isinstance(services.rules, RuleBook) else services.rules
        speech_settings = services.settings.speech
        return CallSpeech(
            services.monitor,
            rules,
            self.record,
            self.facts,
            rate=RATE,
            publish=services.publish,
            redact=speech_settings.redact_numbers,
            partial_stable_s=speech_settings.partial_stable_ms / 1000,
        )

    def _start_recorder(self) -> StreamingRecorder | None:
        general = self.services.settings.general
        if not general.record_calls:
            return None
        path = recording_path(Path(general.data_dir), self.call.sip_call_id)
        try:
            return StreamingRecorder(path)
        except OSError as exc:
            log.error("call %s is not recorded: %s", self.call.sip_call_id, exc)
            return None

    def _bridge_headset(self, bridge: HeadsetBridge | None, media: CallMedia) -> HeadsetBridge | None:
        """Put the call on the agent's headset; if the sound card fails, the call goes on unattended."""
        if bridge is None:
            return None
        try:
            bridge.open()
        except HeadsetError as exc:
            log.error("call %s stays unattended: %s", self.call.sip_call_id, exc)
            return None
        media.earpiece = bridge
        self.call.send_live(bridge.line_frame)
        return bridge

    def _release_headset(self, claimed: HeadsetBridge | None) -> None:
        """Free the headset for the agent's next call before the analysis catches up."""
        if claimed is None or self.services.headset is None:
            return
        self.call.send_live(None)
        self.control.detach_headset()
        if self.media is not None:
            self.media.earpiece = None
        self.services.headset.release(claimed)

    def _finish_speech(
        self, speech: CallSpeech | None, duration: float, hung_up_first: str | None
    ) -> CallSpeechOutcome:
        """The call is over (its media and port are released); wait for recognition to catch up, however
        far behind an overloaded machine is, so the transcript is not lost. A call whose speech could not be
        checked is stored as not checked, with the reason, never with a score."""
        if speech is None:
            return CallSpeechOutcome.not_checked(NO_MODEL if self.services.monitor is None else NO_RULES)
        try:
            return speech.finish(duration, hung_up_first, timeout=SPEECH_CATCH_UP_SECONDS)
        except TimeoutError:
            log.error(
                "recognition still %.0f s behind after the call; stored without its transcript", SPEECH_CATCH_UP_SECONDS
            )
            return CallSpeechOutcome.not_checked(RECOGNITION_BEHIND)
        except Exception:
            log.exception("speech analysis of the call failed; the call is stored without it")
            return CallSpeechOutcome.not_checked(RECOGNITION_FAILED)
