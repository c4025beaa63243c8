"""The overflow desk's script, for a team call no agent could take in time: apologise, offer a callback.

The desk has already answered with the apology greeting (您好,抱歉让您久等了…). Then:

1. ``overflow_offer``: "…需要我们尽快给您回电,请按1;如需回拨其他号码,请输入号码并以井号键结束";
2. the caller presses 1 (the number they call from), or keys another number ending with #
   (or pauses :data:`INTER_DIGIT_SECONDS` after it);
3. a callback for anyone (no owner), due now, so the first agent who is ready gets it; then
   ``overflow_booked`` (…我们会尽快给您回电,感谢您的来电,再见);
4. no key (or nothing usable) within ``[team] keys_wait_seconds``: the thank-you line (``closing``).

The caller is left to hang up first (R7); the desk hangs up after :data:`HANG_UP_AFTER_SECONDS` if not.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from contactcenter.audio.prompts import Prompts
from contactcenter.callbacks.book import CallbackBook
from contactcenter.telephony.call import Call

log = logging.getLogger(__name__)
INTER_DIGIT_SECONDS = 3.0  # a number keyed without # ends after this pause
HANG_UP_AFTER_SECONDS = 4.0  # after the last line, the caller's turn to hang up first
POLL_SECONDS = 0.05
CALLBACK_REASON = "溢出回电:来电时坐席全忙"


@dataclass(frozen=True)
class OverflowResult:
    """What the caller chose: the number to call back (None: no callback) and the callback made for it."""

    keys: str
    number: str | None
    callback_id: int | None


def number_from_keys(keys: str, calling_number: str) -> str | None:
    """The number the caller asked to be called back on: ``1`` alone is the number they call from (None when
    it is withheld); 5 to 20 digits (with or without the closing #) are another number; anything else none."""
    digits = keys.rstrip("#")
    if digits == "1":
        return calling_number if re.fullmatch(r"\+?[0-9]{3,20}", calling_number or "") else None
    if re.fullmatch(r"[0-9]{5,20}", digits):
        return digits
    return None


class OverflowAttendant:
    """Runs the script on one answered call (on the thread that answered it)."""

    def __init__(self, prompts: Prompts, book: CallbackBook | None, keys_wait_seconds: float) -> None:
        self.prompts = prompts
        self.book = book
        self.keys_wait_seconds = keys_wait_seconds

    def run(self, call: Call) -> OverflowResult:
        self._wait_played(call)
        keys = self._collect(call, self._play(call, "overflow_offer", barge_in=True))
        number = number_from_keys(keys, call.remote_number)
        callback_id = self._book(call, number) if number is not None else None
        self._play(call, "overflow_booked" if callback_id is not None else "closing")
        call.ended.wait(HANG_UP_AFTER_SECONDS)
        if not call.ended.is_set():
            try:
                call.hangup()
            except Exception:
                log.debug("call %s ended while hanging up", call.sip_call_id)
        return OverflowResult(keys, number, callback_id)

    # ------------------------------------------------------------------------------------------- steps

    @staticmethod
    def _wait_played(call: Call) -> None:
        while not call.ended.is_set() and call.playing_seconds() > 0:
            call.ended.wait(POLL_SECONDS)

    def _play(self, call: Call, key: str, barge_in: bool = False) -> str:
        """Play prompt ``key`` to its end; with ``barge_in`` a key pressed stops it (a caller who heard
        "按1" need not hear the rest). The keys pressed meanwhile."""
        keys = ""
        if call.ended.is_set():
            return keys
        audio = self.prompts.line_audio(key)
        if audio is not None:
            call.play(audio)
        while not call.ended.is_set() and call.playing_seconds() > 0:
            keys += call.read_dtmf()
            if barge_in and keys:
                call.stop_playing()
                break
            call.ended.wait(POLL_SECONDS)
        return keys + call.read_dtmf()

    def _collect(self, call: Call, keys: str) -> str:
        """Keys pressed from the offer on (``keys``: during it): until #, a pause after digits, or the wait
        runs out."""
        deadline = time.monotonic() + self.keys_wait_seconds
        last_key = time.monotonic()
        while not call.ended.is_set() and "#" not in keys:
            now = time.monotonic()
            if keys and now - last_key >= INTER_DIGIT_SECONDS:
                break
            if not keys and now >= deadline:
                break
            call.ended.wait(POLL_SECONDS)
            more = call.read_dtmf()
            if more:
                keys += more
                last_key = time.monotonic()
        return keys

    def _book(self, call: Call, number: str) -> int | None:
        if self.book is None:
            log.error("overflow call %s: no database, the callback to %s cannot be kept", call.sip_call_id, number)
            return None
        try:
            callback = self.book.add(
                phone=number, due_at=datetime.now(UTC), reason=CALLBACK_REASON, kind="overflow", owner_extension=""
            )
        except Exception:
            log.exception("overflow call %s: the callback to %s could not be stored", call.sip_call_id, number)
            return None
        log.info("overflow call %s: callback %s to %s, due now", call.sip_call_id, callback.id, number)
        return callback.id
