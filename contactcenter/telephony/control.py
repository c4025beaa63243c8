"""What the agent can do to a call: answer now, mute, hold, hang up.

One :class:`CallControl` per call. The terminal keys of ``contactcenter run`` drive it today, and the agent's
page will drive the same object; nothing else changes a call's state on the agent's behalf. Each operation
answers whether it did anything (False: no such call, already in that state, or the call is over).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from contactcenter.audio.headset import HeadsetBridge
from contactcenter.media.call_media import CallMedia
from contactcenter.telephony.call import Call, CallNotAnswered, DTMFUnavailable, TransferResult, transfer_target

log = logging.getLogger(__name__)

#: What changed, for the display: "muted", "unmuted", "held", "resumed".
OnChange = Callable[[str], None]


class CallControl:
    """The agent's controls for one call."""

    def __init__(self, call: Call, on_change: OnChange | None = None) -> None:
        self.call = call
        self.answer_requested = threading.Event()  # "answer now": the ring policy stops waiting
        self.muted = False
        self.held = False
        self.media: CallMedia | None = None  # set once answered
        self.bridge: HeadsetBridge | None = None  # the headset, while the call has it
        self.on_change = on_change
        self._lock = threading.Lock()

    @property
    def on_headset(self) -> bool:
        return self.bridge is not None

    def answer_now(self) -> bool:
        """Answer a ringing call without waiting for the ring policy's ring."""
        if not self.call.ringing or self.answer_requested.is_set():
            return False
        self.answer_requested.set()
        return True

    def mute(self, muted: bool) -> bool:
        """Mute or unmute the agent's microphone (the customer hears silence; hold music is not affected)."""
        with self._lock:
            bridge = self.bridge
            if bridge is None or self.muted == muted or self.call.ended.is_set():
                return False
            self.muted = bridge.muted = muted
        self._changed("muted" if muted else "unmuted")
        return True

    def hold(self, held: bool) -> bool:
        """Hold or resume: hold music (or silence) to the customer, the agent hears nothing, and the
        ``hold_start`` / ``hold_end`` events the R6 rules (请稍等 before, 让您久等了 after) are timed from."""
        with self._lock:
            bridge, media = self.bridge, self.media
            if bridge is None or media is None or self.held == held or self.call.ended.is_set():
                return False
            self.held = bridge.held = media.held = held
            media.mark_event("hold_start" if held else "hold_end")
        self._changed("held" if held else "resumed")
        return True

    def hang_up(self) -> bool:
        """The agent ends the call (the standard says: let the customer hang up first)."""
        if not self.call.answered:
            return False
        self.call.hangup()
        return True

    def transfer(self, target: str) -> TransferResult:
        """Blind transfer to extension ``target`` (REFER); blocks until the outcome (at most about 10 s), so
        call it off any event loop. The ``transfer`` event is marked before the REFER goes out: the R6 rule
        (explain the reason before a transfer) is timed from it. On success the call ends (``transferred``);
        on failure it stays up as it was (``transfer_failed``). ValueError for a target that is not a plain
        extension: nothing is marked or sent."""
        extension = transfer_target(target)
        media = self.media
        if media is not None and self.call.answered:
            media.mark_event("transfer")
        result = self.call.transfer(extension)
        self._changed("transferred" if result.ok else "transfer_failed")
        return result

    def send_dtmf(self, digits: str) -> bool:
        """Send keypad digits (0-9 * # A-D) to the far end as RFC 4733 events: an IVR or an extension behind
        it. False if the call is not answered or the far end did not offer telephone-event (nothing is sent,
        and no in-band tones either); ValueError for other characters."""
        try:
            self.call.send_dtmf(digits)
        except (CallNotAnswered, DTMFUnavailable) as exc:
            log.info("call %s: digits not sent: %s", self.call.sip_call_id, exc)
            return False
        return True

    # -------------------------------------------------------------------------- for the call's own session

    def attach(self, media: CallMedia, bridge: HeadsetBridge | None) -> None:
        with self._lock:
            self.media, self.bridge = media, bridge

    def detach_headset(self) -> None:
        with self._lock:
            self.bridge = None

    def _changed(self, what: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(what)
            except Exception:
                log.exception("display of call %s failed", self.call.sip_call_id)
