"""``[callbacks] auto_dial``: the desk calls the customer back itself when a callback comes due.

It dials through the softphone, plays the callback script's opening (``callback_opening``: "您好,我是...
昨天您反映的问题已经处理,想了解一下现在的情况"), listens until the customer hangs up (at most
``LISTEN_SECONDS``) and records the outcome: reached closes the callback, busy or no answer retries it per
the policy, and the last miss fails it. Survey callbacks are the survey plugin's to dial.
"""

from __future__ import annotations

import logging
import threading
import time

from contactcenter.api import PluginAPI
from contactcenter.records import CallbackRecord
from contactcenter.callbacks.book import CallbackBook
from contactcenter.audio.prompts import Prompts

log = logging.getLogger(__name__)
DIAL_TIMEOUT_SECONDS = 30.0
LISTEN_SECONDS = 60.0
OPENING_PROMPT = "callback_opening"


class CallbackDialer:
    def __init__(self, phone, api: PluginAPI, book: CallbackBook, listen_seconds: float = LISTEN_SECONDS) -> None:
        self.phone = phone
        self.listen_seconds = listen_seconds
        self.api = api
        self.book = book
        self.prompts = Prompts(api.settings.scripts.prompts_dir)

    def __call__(self, callback: CallbackRecord) -> None:
        if callback.kind == "survey":
            return
        threading.Thread(target=self._dial_logged, args=(callback,), name=f"callback-{callback.id}",
                         daemon=True).start()

    def _dial_logged(self, callback: CallbackRecord) -> None:
        try:
            self.dial(callback)
        except Exception:  # reopened as due by the scheduler's sweep after STUCK_DIAL; listed meanwhile
            log.exception("dialling callback %s failed", callback.id)

    def dial(self, callback: CallbackRecord) -> str:
        """Place the call and record how it went; the outcome (answered, busy, no_answer, failed)."""
        if self.book.start_attempt(callback.id) is None:
            return "taken"  # an agent took it first
        result = self.phone.dial(callback.phone, timeout=DIAL_TIMEOUT_SECONDS)
        if result.outcome == "answered":
            call = result.call
            opening = self.prompts.line_audio(OPENING_PROMPT)
            if opening:
                call.play(opening)
            deadline = time.monotonic() + self.listen_seconds
            while call.playing_seconds() > 0 and not call.ended.is_set():
                time.sleep(0.05)
            call.ended.wait(timeout=max(0.0, deadline - time.monotonic()))  # the customer hangs up first
            call.hangup()
        note = f"自动回访: {result.outcome} {result.reason}".strip()
        record = self.api.close_callback(callback.id, result.outcome, note=note)
        log.info("callback %s dialled: %s (now %s)", callback.id, result.outcome, record.state)
        return result.outcome
