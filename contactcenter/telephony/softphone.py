"""The softphone the desk owns: register, take incoming calls, answer, play, listen, hang up.

The rest of the product talks to this, never to pyVoIP (only pyvoip_adapter imports it), so the SIP backend
could be replaced. Registration is checked before pyVoIP is asked (pyVoIP blocks 30 s on a silent
registrar and does not report a wrong password), and retried with back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contactcenter.telephony.pyvoip_adapter import CallState, DeskVoIPCall, DeskVoIPPhone
from contactcenter.telephony.pyvoip_adapter import InvalidStateError
from contactcenter.telephony.registrar import sip_options_ping

log = logging.getLogger(__name__)


CallNotRinging = InvalidStateError  # what answer() raises when the caller hung up in the same instant


class RegistrationError(Exception):
    """The registrar cannot be reached or refused us; the message says which and what to check."""


@dataclass(frozen=True)
class SipAccount:
    server: str
    port: int
    user: str
    password: str
    local_ip: str
    local_port: int
    rtp_low: int
    rtp_high: int


class IncomingCall:
    """One incoming call, as the desk sees it."""

    def __init__(self, call: DeskVoIPCall, invited_at: datetime) -> None:
        self._call = call
        self.invited_at = invited_at
        self.sip_call_id: str = call.call_id
        from_header = call.request.headers["From"]
        self.remote_number: str = from_header.get("number") or ""
        self.caller_name: str = (from_header.get("caller") or "").strip().strip('"').strip()  # pyVoIP left a quote

    @property
    def ringing(self) -> bool:
        return self._call.state == CallState.RINGING

    @property
    def ended(self) -> threading.Event:
        return self._call.ended

    @property
    def hung_up_by(self) -> str | None:
        return self._call.hung_up_by

    def answer(self) -> None:
        self._call.answer()

    def reject(self, code: int = 486, phrase: str = "Busy Here") -> None:
        self._call.deny(code, phrase)

    def hangup(self) -> None:
        if self._call.state == CallState.ANSWERED:
            self._call.hangup()

    def play(self, pcm16_8k: bytes) -> None:
        """Queue 16-bit 8 kHz audio to the caller (it plays in real time after what is queued)."""
        self._call.write_audio(pcm16_8k)

    def playing_seconds(self) -> float:
        clients = self._call.RTPClients
        return clients[0].pending_send_seconds() if clients else 0.0

    def read_frame(self, flush: bool = False) -> bytes | None:
        """The caller's next 20 ms (16-bit, 8 kHz), None if not yet arrived."""
        return self._call.read_frame(flush)

    def stop_playing(self) -> None:
        """Drop what is still queued for the caller (a key pressed during an IVR prompt: barge-in)."""
        for client in self._call.RTPClients:
            client.clear_send()

    def read_dtmf(self) -> str:
        """Digits pressed since the last call ("" if none)."""
        return self._call.get_dtmf(length=32)

    def send_live(self, source: Callable[[], bytes] | None) -> None:
        """``source()`` is asked for 20 ms (16-bit, 8 kHz) every time a packet goes to the caller and mixed
        with the queued prompts: the agent's microphone. None stops it."""
        for client in self._call.RTPClients:
            client.live_source = source

    def on_audio_sent(self, handler: Callable[[bytes], None]) -> None:
        """``handler(frame)`` for every 20 ms the caller is sent (the desk's own leg)."""
        for client in self._call.RTPClients:
            client.on_sent = handler


@dataclass(frozen=True)
class DialResult:
    """How a placed call went: answered (with the call), busy, no_answer or failed, and the SIP reason."""

    outcome: str
    reason: str
    call: "PlacedCall | None" = None


class PlacedCall(IncomingCall):
    """A call we placed and the other side answered: the same controls as a call taken."""


class Softphone:
    """A registered SIP extension that hands each incoming call to ``on_call`` (in the call's own thread)."""

    def __init__(self, account: SipAccount, on_call: Callable[[IncomingCall], None]) -> None:
        self.account = account
        self.on_call = on_call
        self.phone = DeskVoIPPhone(account.server, account.port, account.user, account.password,
                                   myIP=account.local_ip, callCallback=self._call_thread, sipPort=account.local_port,
                                   rtpPortLow=account.rtp_low, rtpPortHigh=account.rtp_high)

    def _call_thread(self, call: DeskVoIPCall) -> None:
        """pyVoIP's call thread (started 1 s after the INVITE): it must last as long as the call."""
        try:
            self.on_call(IncomingCall(call, call.created_at))
        except Exception:
            log.exception("call %s failed in the desk; hanging up", call.call_id)
            if call.state == CallState.ANSWERED:
                call.hangup()
            elif call.state == CallState.RINGING:
                call.deny(500, "Server Internal Error")

    def start(self, attempts: int = 1, first_delay: float = 1.0) -> None:
        """Register; RegistrationError with the reason if the registrar is silent or refuses us.

        ``attempts`` > 1 retries with doubling back-off (1 s, 2 s, 4 s, ...)."""
        delay = first_delay
        for attempt in range(1, attempts + 1):
            try:
                self._register_once()
                return
            except RegistrationError as exc:
                if attempt == attempts:
                    raise
                log.warning("%s; trying again in %.0f s", exc, delay)
                time.sleep(delay)
                delay *= 2

    def _register_once(self) -> None:
        account = self.account
        where = f"{account.server}:{account.port}"
        if sip_options_ping(account.server, account.port, timeout=2.0) is None:
            raise RegistrationError(f"the registrar {where} does not answer (is the PBX up, the address right?)")
        self.phone.start()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            status = self.phone.get_status().name
            if status == "REGISTERED":
                log.info("registered as %s at %s", account.user, where)
                return
            if status == "FAILED":
                break
            time.sleep(0.05)
        self.phone.stop()
        raise RegistrationError(f"the registrar {where} refused {account.user} (check the user and the password "
                                f"in the environment variable)")

    def dial(self, number: str, timeout: float = 30.0) -> DialResult:
        """Call ``number``; wait at most ``timeout`` seconds for an answer (then CANCEL: no_answer).

        Never blocks signalling: the INVITE is sent and the answer awaited on an event."""
        call = self.phone.place_call(number)
        if not call.settled.wait(timeout):
            call.give_up(f"no answer within {timeout:g} s")
            call.ended.wait(5)
            if call.state == CallState.DIALING:  # the far end never confirmed the CANCEL
                call.abandon("no answer")
        if call.outcome == "answered":
            return DialResult("answered", call.outcome_reason, PlacedCall(call, call.created_at))
        return DialResult(call.outcome or "failed", call.outcome_reason or "no final response")

    @property
    def registered(self) -> bool:
        return self.phone.get_status().name == "REGISTERED"

    def stop(self) -> None:
        """Hang up calls in progress and deregister."""
        for call in list(self.phone.calls.values()):
            try:
                if call.state == CallState.ANSWERED:
                    call.hangup()
                elif call.state == CallState.RINGING:
                    call.deny(480, "Temporarily Unavailable")
            except Exception:
                log.exception("could not end call %s", call.call_id)
        self.phone.stop()
