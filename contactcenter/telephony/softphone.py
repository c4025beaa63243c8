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

from contactcenter.telephony.call import Call, DialResult
from contactcenter.telephony.pyvoip_adapter import CallState, DeskVoIPCall, DeskVoIPPhone
from contactcenter.telephony.rtp_loop import RTP_LOOP
from contactcenter.telephony.sip_transport import TransportError

log = logging.getLogger(__name__)

# How long the start-up OPTIONS waits for the registrar, in T1s (8 s at the default 500 ms: five sends). Long
# enough for a lossy link or a machine stalled for seconds (2 s was not, now and then, on a shared CI machine);
# short enough that a wrong address is said within seconds rather than after timer F's 32 s.
REGISTRAR_WAIT_T1S = 16


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
    t1: float = 0.5  # seconds: RFC 3261 timers ([sip] t1_ms, t2_ms)
    t2: float = 4.0
    contact_port: int | None = None  # advertised in Via and Contact instead of local_port (a static NAT, a relay)
    outbound_proxy: tuple[str, int] | None = None  # every request leaves through it, in-dialog ones too
    transport: str = "udp"  # "tcp", "tls": one connection to the registrar, kept and reused ([sip] transport)
    ca_file: str = ""  # the CAs TLS trusts; empty: the system store ([sip] tls_ca_file)
    media_encryption: str = "none"  # "srtp": SDES-keyed SRTP on every call, TLS only ([sip] media_encryption)


class Softphone:
    """A registered SIP extension that hands each incoming call to ``on_call`` (in the call's own thread)."""

    def __init__(self, account: SipAccount, on_call: Callable[[Call], None]) -> None:
        self.account = account
        self.on_call = on_call
        self.phone = DeskVoIPPhone(
            account.server,
            account.port,
            account.user,
            account.password,
            myIP=account.local_ip,
            callCallback=self._call_thread,
            sipPort=account.local_port,
            rtpPortLow=account.rtp_low,
            rtpPortHigh=account.rtp_high,
            t1=account.t1,
            t2=account.t2,
            contact_port=account.contact_port,
            outbound_proxy=account.outbound_proxy,
            transport=account.transport,
            ca_file=account.ca_file,
            media_encryption=account.media_encryption,
        )

    def _call_thread(self, call: DeskVoIPCall) -> None:
        """pyVoIP's call thread (started 1 s after the INVITE): it must last as long as the call."""
        try:
            self.on_call(Call(call, "inbound"))
        except Exception:
            log.exception("call %s failed in the desk; hanging up", call.call_id)
            if call.state == CallState.ANSWERED:
                call.hangup()
            elif call.state == CallState.RINGING:
                call.deny(500, "Server Internal Error")

    def start(self, attempts: int = 1, first_delay: float = 1.0) -> None:
        """Register; RegistrationError with the reason if the registrar is silent or refuses us.

        ``attempts`` > 1 retries with doubling back-off (1 s, 2 s, 4 s, ...)."""
        RTP_LOOP.start()  # call media (and its sender process) ready before a call can come in
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
        sip = self.phone.sip
        try:
            sip.listen()  # the ping leaves from the phone's own socket: a NAT or relay in between passes its answer
        except TransportError as exc:  # TCP/TLS: refused, or a certificate not trusted (one line)
            raise RegistrationError(str(exc)) from None
        if sip.ping(wait=REGISTRAR_WAIT_T1S * account.t1) is None:
            sip.stop()
            raise RegistrationError(f"the registrar {where} does not answer (is the PBX up, the address right?)")
        self.phone.start()  # the REGISTER transaction, its challenge answered: done when this returns
        status = self.phone.get_status().name
        if status == "REGISTERED":
            log.info("registered as %s at %s", account.user, where)
            return
        self.phone.stop()
        if status == "FAILED":
            raise RegistrationError(
                f"the registrar {where} refused {account.user} (check the user and the password "
                f"in the environment variable)"
            )
        raise RegistrationError(f"the registrar {where} answered OPTIONS but not REGISTER (is it a registrar?)")

    def dial(self, number: str, timeout: float = 30.0, cancel: threading.Event | None = None) -> DialResult:
        """Call ``number``; wait at most ``timeout`` seconds for an answer (then CANCEL: no_answer), or until
        ``cancel`` is set (the agent stopped it: CANCEL, outcome ``cancelled``).

        Never blocks signalling: the INVITE is sent and the answer awaited on an event."""
        call = self.phone.place_call(number)
        deadline = time.monotonic() + timeout
        settled = call.settled.wait(timeout if cancel is None else 0)
        while not settled and cancel is not None and not cancel.is_set() and time.monotonic() < deadline:
            settled = call.settled.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        cancelled = not settled and cancel is not None and cancel.is_set()
        if not settled:
            call.give_up("cancelled by the agent" if cancelled else f"no answer within {timeout:g} s")
            call.ended.wait(5)
            if call.state == CallState.DIALING:  # the far end never confirmed the CANCEL
                call.abandon("no answer")
        if cancelled and call.outcome != "answered":
            return DialResult("cancelled", "cancelled by the agent")
        if call.outcome == "answered":
            return DialResult("answered", call.outcome_reason, Call(call, "outbound"))
        return DialResult(call.outcome or "failed", call.outcome_reason or "no final response")

    def security(self) -> str:
        """How signalling and media travel, for the startup lines: transport, certificate check, encryption."""
        return self.phone.security()

    @property
    def registered(self) -> bool:
        return self.phone.get_status().name == "REGISTERED"

    def stop(self) -> None:
        """Hang up calls in progress and deregister."""
        for call in self.phone.desk_calls():
            try:
                if call.state == CallState.ANSWERED:
                    call.hangup()
                elif call.state == CallState.RINGING:
                    call.deny(480, "Temporarily Unavailable")
            except Exception:
                log.exception("could not end call %s", call.call_id)
        self.phone.stop()
