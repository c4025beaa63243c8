"""``[callbacks] auto_dial``: the desk calls the customer back itself when a callback comes due.

It dials through the plugin API (``api.dial``, the desk's phone), plays the callback script's opening
(``callback_opening``: "您好,我是...昨天您反映的问题已经处理,想了解一下现在的情况"), listens until the
customer hangs up (at most ``LISTEN_SECONDS``) and records the outcome: reached closes the callback, busy or
no answer retries it per the policy, and the last miss fails it. Survey callbacks are the survey plugin's to
dial; a callback a caller left with the overflow desk (kind ``overflow``) is for an agent, never a recording:
it waits on the agents' pages until one is ready. Like the built-in plugins it uses only the plugin API.
"""

from __future__ import annotations

import logging
import threading
import time

from contactcenter.audio.prompts import Prompts
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import CallbackRecord

log = logging.getLogger(__name__)
DIAL_TIMEOUT_SECONDS = 30.0
LISTEN_SECONDS = 60.0
OPENING_PROMPT = "callback_opening"


class CallbackDialer:
    def __init__(self, api: PluginAPI, listen_seconds: float = LISTEN_SECONDS) -> None:
        self.listen_seconds = listen_seconds
        self.api = api
        self.prompts = Prompts(api.settings.scripts.prompts_dir)

    def __call__(self, callback: CallbackRecord) -> None:
        if callback.kind in ("survey", "overflow"):
            return
        threading.Thread(
            target=self._dial_logged, args=(callback,), name=f"callback-{callback.id}", daemon=True
        ).start()

    def _dial_logged(self, callback: CallbackRecord) -> None:
        try:
            self.dial(callback)
        except Exception:  # reopened as due by the scheduler's sweep after STUCK_DIAL; listed meanwhile
            log.exception("dialling callback %s failed", callback.id)

    def dial(self, callback: CallbackRecord) -> str:
        """Place the call and record how it went; the outcome (answered, busy, no_answer, failed)."""
        if self.api.start_callback_attempt(callback.id) is None:
            return "taken"  # an agent took it first
        result = self.api.dial(callback.phone, timeout=DIAL_TIMEOUT_SECONDS)
        if result.line is not None:
            line = result.line
            opening = self.prompts.line_audio(OPENING_PROMPT)
            if opening:
                line.play(opening)
            deadline = time.monotonic() + self.listen_seconds
            while line.playing_seconds() > 0 and not line.ended.is_set():
                time.sleep(0.05)
            line.ended.wait(timeout=max(0.0, deadline - time.monotonic()))  # the customer hangs up first
            line.hangup()
        note = f"自动回访: {result.outcome} {result.reason}".strip()
        record = self.api.close_callback(callback.id, result.outcome, note=note)
        log.info("callback %s dialled: %s (now %s)", callback.id, result.outcome, record.state)
        return result.outcome
