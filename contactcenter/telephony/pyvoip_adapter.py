"""pyVoIP 1.6.8, corrected. The only module that imports pyVoIP; every fix to it lives here.

pyVoIP works end to end but has protocol bugs reproduced on the wire (../shared/reference/PYVOIP_FINDINGS.md
§0 and §6). Each class below subclasses one of pyVoIP's and overrides only what is wrong; each fix names
its finding and has a regression test in tests/test_pyvoip_fixes.py that fails on stock 1.6.8:

* F2 CANCEL while ringing: 200 for the CANCEL, 487 for the INVITE, the call ends (stock answered it later).
* F3 parser: header names split at the first colon and stripped, empty values and compact forms accepted,
  comma-separated Vias, every Record-Route kept, bodies split once, SDP attributes for payload types not
  offered ignored (stock dropped baresip's INVITE, and any offer with an extra rtpmap).
* F4 OPTIONS, NOTIFY, INFO answered 200, other requests 405, BYE for an unknown dialog 481 (stock: silence).
* F5 BYE: our own single Via with a new branch, our own CSeq, the route set as Route headers, sent to the
  next hop (stock copied the INVITE's Vias, so the 200 OK was routed back to the caller itself).
* F6 re-INVITE: answered from the running media streams to the sender, retransmissions get the same answer
  (stock restarted the RTP threads on every re-INVITE).
* F8 PCMA sent as A-law (stock encoded µ-law bytes under payload type 8).
* F9 receive path: 16-bit audio ordered by RTP timestamp, gaps filled with silence (stock: 0x00, full-scale
  negative in its 8-bit format), no ever-growing packet log.
* The call thread starts with the 180, not 1 s later (stock: a fixed Timer(1) before the application saw
  the call), and is not tracked by pyVoIP's janitor, which deleted calls whose thread had returned.
* Send pacing against an absolute clock: 20.00 ms per packet (stock drifted to 20.1 ms), and every stream's
  packets sent and received by the process's one RTP loop (rtp_loop.py) instead of two threads per stream
  (80 calls on 2 cores: outgoing spacing p99 39 ms instead of 546 ms).
* pyVoIP's debug prints go to logging.
* Every datagram is checked first (sip_requests.SipScreen, issue 19 item 3): pyVoIP parses only what the screen
  let through, rewritten to the plain form its parser handles; the rest the screen answers itself (400 naming the
  fault, 505, 501/405, 416, 420, 415, 406, 488, 481, addressed by the top Via with received/rport, never by a name
  lookup), absorbs (responses for no call of ours) or drops (counted, logged once per source per minute). The
  parser below is tolerant of what the screen passes: any Via, From or To RFC 3261 allows, SDP lines it cannot read
  skipped, an INVITE without Contact (RFC 2543) rung with our own Contact in the 180.
* INVITE server transactions (issue 19 items 1-2, RFC 3261 13.3.1.4 and 17.2.1): a new INVITE gets 100 Trying
  (no To tag) and then its 180 at once. Every response to an INVITE (100, 180, 200, 486, 487, 500) goes per its top
  Via with received/rport (stock sent the 200 OK to the registrar, so a caller sending straight to the desk's port
  never connected) and is kept as the transaction's last: a retransmitted INVITE (same Call-ID and branch) gets it
  again instead of a second call or a re-INVITE answer, until a while after the call ends. The 200 OK is resent
  at T1, 2*T1, ... capped at T2 until the ACK; no ACK within 64*T1: BYE, and the call ends ``not_connected``
  (the desk stores it so, unscored); a re-INVITE or a BYE in the dialog also proves the 200 arrived (RFC 3261
  14.1; the caller's ACK was lost). T1 and T2 come from [sip] t1_ms, t2_ms. A retransmitted BYE (its 200 was
  lost) gets the same 200 (it got 481, so the caller saw its hang-up fail).
* Non-INVITE server transactions (17.2.2): a retransmitted OPTIONS, INFO, NOTIFY, CANCEL... (same branch, method,
  CSeq and Call-ID) gets our last response again instead of being handled twice. Responses are kept 64*T1, but at
  least 32 s: the peer retransmits by its own T1 (a proxy's 500 ms), which may exceed ours.
* Client transactions (17.1, sip_transactions.ClientTransactions; stock sent every request once): our INVITE is
  resent at T1 doubling until any response (timer A); none within 64*T1 (timer B) and the placed call fails,
  saying so. BYE, CANCEL, REFER, OPTIONS and REGISTER are resent at T1 doubling capped at T2, at T2 once a
  provisional came (timer E), until a final or 64*T1 (timer F). A repeated final is absorbed (a repeated non-2xx
  to our INVITE gets its ACK again); a repeated 2xx gets the same ACK again. REGISTER is one of them, answered
  through the receive loop (stock sent it once, then read the socket itself for 30 s while holding the receive
  loop); the softphone's first OPTIONS ping leaves from the phone's own socket. ``retransmissions`` counts what
  was resent (requests and 200 OKs).
* Every request of ours carries ``;rport`` in its Via (RFC 3581; stock's INVITE, ACK and CANCEL did not). In-dialog
  requests go to the first route or the remote target (F5), or to the phone's outbound proxy if it has one
  (RFC 3261 8.1.2). ``contact_port`` advertises another port than the one bound (a static NAT or relay in front).

Added (pyVoIP 1.6.8 has neither):

* Blind transfer (REFER, RFC 3515) inside an answered call's dialog: ``Refer-To`` the extension at the
  desk's registrar, ``Referred-By`` the desk, resent per timer E and given up unanswered after 5 s, then the transferee's
  ``NOTIFY`` (Event: refer, message/sipfrag) answered 200 and followed to its final status; on 2xx the desk
  sends BYE and the call ends ``hung_up_by == "transfer"``. A NOTIFY for a dialog we do not have is 481.
* DTMF sent as RFC 4733 telephone-events (the payload type the SDP negotiated) in place of voice packets, on
  the voice stream's SSRC, sequence numbers and clock.
* In-dialog requests (REFER, BYE) number their CSeq per dialog, above the INVITE's for calls we placed (the
  shared counter pyVoIP's BYE used could fall below it).
* SIP over TCP or TLS (issue 19 item 4, ``transport``): the UDP socket is replaced by a
  sip_transport.StreamSipSocket, one verified connection to the registrar (or outbound proxy) with the same
  datagram face, reused both ways and re-opened (then re-registered) when lost.
* SRTP with SDES keys (``media_encryption = "srtp"``, srtp_media, libsrtp): an INVITE's offer is checked before
  it rings (SRTP only over TLS, plain RTP only when media is not to be encrypted; else 488 and one log line);
  the answer and our own INVITE carry RTP/SAVP and ``a=crypto``; each media stream's socket is wrapped so every
  packet is protected on the way out and authenticated on the way in. A callee answering our SRTP offer
  without SRTP gets a BYE (outcome failed). A re-INVITE keeps the keys agreed first.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, TypeGuard, TypeVar

import numpy as np
import pyVoIP
import pyVoIP.VoIP  # 1.6.8: pyVoIP.VoIP must be imported before pyVoIP.SIP
from pyVoIP import RTP, SIP
from pyVoIP.VoIP import VoIP as voip_module
from pyVoIP.VoIP.VoIP import CallState, InvalidStateError, PhoneStatus, VoIPCall, VoIPPhone

from contactcenter.audio.g711 import ALAW_TO_PCM, ULAW_TO_PCM, pcm16_to_alaw, pcm16_to_ulaw
from contactcenter.audio.line import FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS, RATE, SAMPLE_WIDTH
from contactcenter.telephony.held_lock_udp import HeldLockSocket
from contactcenter.telephony.rtp_loop import RTP_LOOP
from contactcenter.telephony.rtp_ports import RTP_PORTS, NoRtpPortError
from contactcenter.telephony.sip_requests import MAX_DATAGRAM, Rejection, SipScreen, Via, parse_addresses, parse_vias
from contactcenter.telephony.sip_transactions import (
    TIMEOUT_T1S,
    ClientTransaction,
    ClientTransactions,
    message_key,
    server_key,
)
from contactcenter.telephony.sip_transport import StreamSipSocket
from contactcenter.telephony.srtp_media import (
    CryptoAttribute,
    SrtpRefused,
    SrtpSession,
    SrtpSocket,
    accepted_attribute,
    answer_attribute,
    check_offer,
    offer_attributes,
    sdp_of,
    secure_sdp,
    with_body,
)

log = logging.getLogger(__name__)

USER_AGENT = "contactcenter (pyVoIP 1.6.8)"
COMPACT_HEADERS = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
}
CANONICAL_HEADERS = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Record-Route",
        "Route",
        "Max-Forwards",
        "Allow",
        "Supported",
        "User-Agent",
        "WWW-Authenticate",
        "Authorization",
        "Expires",
        "Event",
    )
}
KNOWN_METHODS = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "NOTIFY",
    "INFO",
    "UPDATE",
    "MESSAGE",
    "SUBSCRIBE",
    "REFER",
    "PRACK",
    "REGISTER",
    "PUBLISH",
]
ALLOWED = "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, INFO"

REFER_TIMEOUT = 5.0  # seconds for the transferee to answer a REFER at all (RFC 3261 would wait 32 s)
T1, T2 = 0.5, 4.0  # RFC 3261 retransmission timers over UDP (defaults; the phone takes [sip] t1_ms, t2_ms)
ACK_WAIT_T1S = 64  # RFC 3261 13.3.1.4: a 2xx not ACKed within 64*T1 ends the call (BYE)
EXTENSION = re.compile(r"[A-Za-z0-9+*][A-Za-z0-9_.*+-]{0,31}")  # what may stand in a Refer-To's user part
SIPFRAG_STATUS = re.compile(r"SIP/2\.0\s+(\d{3})\s*([^\r\n]*)")

DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15, in order
DTMF_TONES = {  # (row, column) frequencies in Hz, for the agent leg's copy of what the far end plays
    digit: (row, column)
    for row, keys in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"), strict=True)
    for column, digit in zip((1209, 1336, 1477, 1633), keys, strict=True)
}
DTMF_TONE_FRAMES = 5  # 100 ms of tone per digit (ITU-T Q.24 asks at least 40 ms)
DTMF_END_REPEATS = 3  # RFC 4733 2.5.1.4: the end packet is sent three times
DTMF_PAUSE_FRAMES = 2  # voice packets between digits: with the end repeats, 80 ms between tones
DTMF_VOLUME = 10  # -10 dBm0, the usual level
DTMF_TONE_AMPLITUDE = 7000  # each of the two sines at about -10 dBm0 in 16-bit PCM
DTMF_MAX_DIGITS = 64


T = TypeVar("T")


def _all_instances(items: Sequence[object], kind: type[T]) -> TypeGuard[list[T]]:
    """Whether every item is a ``kind``: narrows pyVoIP's lists typed with its base classes to our subclasses."""
    return all(isinstance(item, kind) for item in items)


def _debug_to_log(message: Any, printed: Any = None) -> None:
    log.debug("pyVoIP: %s", message)


# pyVoIP prints some of its debug lines ("TODO: Add 500 Error ...") even with DEBUG off; send them to logging.
pyVoIP.debug = SIP.debug = RTP.debug = voip_module.debug = _debug_to_log


def _uri_of(header_value: str) -> str:
    """The URI inside a name-addr (``"x" <sip:a@b;lr>;tag=1`` → ``sip:a@b;lr``)."""
    match = re.search(r"<([^>]*)>", header_value)
    return (match.group(1) if match else header_value.split(";")[0]).strip()


def _host_port(uri: str) -> tuple[str, int]:
    match = re.match(r"sips?:(?:[^@]*@)?([^:;>]+)(?::(\d+))?", uri)
    if match is None:
        raise ValueError(f"cannot route to {uri!r}")
    return match.group(1), int(match.group(2) or 5060)


def _request_uri(request: SIP.SIPMessage) -> str:
    return request.heading.decode("utf8", errors="replace").split(" ")[1]


def check_extension(extension: str) -> str:
    """``extension`` if it is a plain extension (digits, letters, ``* + _ . -``, at most 32), else ValueError.

    It is put into a SIP header verbatim: anything else (``>``, ``;``, ``@``, spaces, line breaks) could
    change where the call goes or inject headers."""
    if not isinstance(extension, str) or EXTENSION.fullmatch(extension) is None:
        raise ValueError(
            f"not an extension: {extension!r} (1 to 32 of digits, letters and * + _ . -, starting with a digit, "
            "a letter, + or *)"
        )
    return extension


def check_dtmf(digits: str) -> str:
    """``digits`` if each is a DTMF key (0-9, *, #, A-D) and there are 1 to 64 of them, else ValueError."""
    if not isinstance(digits, str) or not 0 < len(digits) <= DTMF_MAX_DIGITS or set(digits) - set(DTMF_EVENTS):
        raise ValueError(f"not DTMF digits: {digits!r} (1 to {DTMF_MAX_DIGITS} of 0-9 * # A-D)")
    return digits


def _sipfrag_status(message: SIP.SIPMessage) -> tuple[int, str] | None:
    """The status line a message/sipfrag body carries (a NOTIFY for a REFER), or None if it has none."""
    body = message.raw.partition(b"\r\n\r\n")[2].decode("utf-8", errors="replace").lstrip()
    match = SIPFRAG_STATUS.match(body)
    return (int(match.group(1)), match.group(2).strip()) if match else None


@dataclass
class InviteResponse:
    """The last response sent for an INVITE (one server transaction, RFC 3261 17.2.1): a retransmitted INVITE
    (same branch) gets it again instead of starting a second call. Kept ``until`` (monotonic) once final."""

    data: bytes
    address: tuple[str, int]
    until: float = float("inf")


@dataclass(frozen=True)
class Dialog:
    """What in-dialog requests (ACK for 2xx, BYE) need: both ends with tags, the remote target, the route set."""

    local: str
    remote: str
    target: str
    routes: list[str]

    def next_hop(self) -> tuple[str, int]:
        return _host_port(_uri_of(self.routes[0]) if self.routes else self.target)


@dataclass
class Referral:
    """One blind transfer (REFER) of a call, as the transferee reports it: the REFER's answer, then each
    sipfrag status of its call to the target. ``done`` is set once, with ``ok``, ``status`` and ``reason``."""

    extension: str
    uri: str  # the Refer-To
    cseq: int  # the REFER's; a NOTIFY's ``Event: refer;id=`` names it
    text: bytes  # the REFER as sent, for retransmissions (same branch)
    next_hop: tuple[str, int]
    sent_at: float = field(default_factory=time.monotonic)
    responded: threading.Event = field(default_factory=threading.Event)  # an answer, a NOTIFY or the end: no resending
    done: threading.Event = field(default_factory=threading.Event)
    refer_status: int | None = None  # 202, or the refusal
    progress: list[tuple[int, str, float]] = field(default_factory=list)  # sipfrags: status, phrase, s after REFER
    ok: bool = False
    status: int | None = None
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def conclude(self, ok: bool, status: int | None, reason: str) -> bool:
        """Record the outcome unless one already was; whether this call recorded it."""
        with self._lock:
            if self.done.is_set():
                return False
            self.ok, self.status, self.reason = ok, status, reason
            self.done.set()
            self.responded.set()
            return True

    def last_heard(self) -> str:
        """What the transferee last reported, for a reason given up on (" (last heard: 180 Ringing)")."""
        if not self.progress:
            return ""
        status, phrase, _ = self.progress[-1]
        return f" (last heard: {f'{status} {phrase}'.strip()})"


class DeskSIPMessage(SIP.SIPMessage):
    """F3: a tolerant parser that knows every common method, so nothing valid is silently dropped."""

    def __init__(self, data: bytes) -> None:
        self.record_route: list[str] = []
        super().__init__(data)

    def parse(self, data: bytes) -> None:
        self.SIPCompatibleMethods = KNOWN_METHODS
        super().parse(data)

    @staticmethod
    def parse_raw_header(headers_raw: list[bytes], handle: Callable[[str, Any], None]) -> None:
        headers: dict[str, Any] = {"Via": []}
        record_route: list[str] = []
        for raw in headers_raw:
            line = raw.decode("utf-8", errors="replace")
            if ":" not in line:
                continue
            name, _, value = line.partition(":")
            name = name.strip()
            name = COMPACT_HEADERS.get(name, CANONICAL_HEADERS.get(name.lower(), name))
            value = value.strip()
            if name == "Via":
                headers["Via"].append(value)  # a list of via-parms: split by parse_header, quotes respected
            elif name == "Record-Route":
                record_route += [v.strip() for v in value.split(",") if v.strip()]
            elif name not in headers:
                headers[name] = value
        for key, value in headers.items():
            if key in ("Allow", "Supported") and not value:
                handle(key, "")
                continue
            handle(key, value)
        if record_route:
            handle("Record-Route", record_route)  # to parse_header below: kept whole, in order

    def parse_header(self, header: str, data: Any) -> None:
        if header == "Record-Route":
            self.record_route = data  # every Record-Route (pyVoIP kept none)
            return
        try:
            if header == "Via":  # pyVoIP split at spaces: folded or spaced Vias, IPv6 and quoted commas broke it
                self.headers["Via"] += [_via_fields(via) for value in data for via in parse_vias(value)]
                return
            if header in ("From", "To"):  # pyVoIP raised on a tel: URI and misread a spaced or non-final tag
                self.headers[header] = _party_fields(data)
                return
        except Rejection:  # not RFC 3261 syntax (only a message the screen did not check): pyVoIP's reading
            if header == "Via":
                data = [v.strip() for value in data for v in value.split(",") if v.strip()]
        if header == "Content-Type":  # pyVoIP compares it with "application/sdp" as written
            data = data.split(";")[0].strip().lower()
        if header == "CSeq":  # any whitespace between number and method (pyVoIP split at one space)
            data = " ".join(data.split())
        super().parse_header(header, data)

    def parse_body(self, header: str, data: str) -> None:
        """An rtpmap or fmtp for a payload type the m= line does not offer is ignored (pyVoIP crashed), and so is
        an rtpmap without a clock rate and any other line pyVoIP cannot read (the screen checked the c= and m=
        lines a call needs; RFC 4475's ``a=rtpmap:31 LPC`` made pyVoIP drop the whole INVITE)."""
        sdp = self.headers.get("Content-Type") == "application/sdp"  # else pyVoIP keeps each line as text
        if sdp and header == "a" and data.partition(":")[0] in ("rtpmap", "fmtp"):
            payload_type = re.split(" |/", data.partition(":")[2])[0]
            if not any(payload_type in media["methods"] for media in self.body.get("m", [])):
                return
            if data.startswith("rtpmap:") and len(re.split(" |/", data.partition(":")[2])) < 3:
                return
        try:
            super().parse_body(header, data)
        except (IndexError, KeyError, ValueError, NameError) as exc:  # NameError: pyVoIP's k= without a colon
            log.debug("SDP line %s=%s ignored (%s)", header, data, exc)

    @staticmethod
    def parse_raw_body(body: bytes, handle: Callable[[str, str], None]) -> None:
        for line in re.split(r"\r?\n", body.decode("utf-8", errors="replace")):
            if "=" in line:
                key, _, value = line.partition("=")
                handle(key, value)

    def parse_sip_response(self, data: bytes) -> None:
        """A status code pyVoIP has no name for is read as its class's x00 (RFC 3261 8.1.3.2; pyVoIP raised)."""
        status_line, separator, rest = data.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) not in SIP_STATUS_CODES:
            parts[1] = parts[1][:1] + b"00"
            data = b" ".join(parts) + separator + rest
        super().parse_sip_response(_one_body_split(data))

    def parse_sip_message(self, data: bytes) -> None:
        super().parse_sip_message(_one_body_split(data))


SIP_STATUS_CODES = frozenset(int(status) for status in SIP.SIPStatus)


def _via_fields(via: Via) -> dict[str, Any]:
    """A via-parm as pyVoIP keeps it: ``type``, ``address`` (host, port as text) and each parameter."""
    fields: dict[str, Any] = {"type": via.protocol, "address": (via.host, str(via.port or 5060))}
    fields.update((key.lower(), value) for key, value in via.params)
    return fields


def _party_fields(value: str) -> dict[str, Any]:
    """From or To as pyVoIP keeps it: ``raw`` (all but the tag), ``tag``, ``address`` (the URI after its scheme),
    ``number`` (the user part), ``caller`` (the display name), ``host``."""
    [party] = parse_addresses(value, "Malformed From or To")
    address = party.uri_text.partition(":")[2]
    return {
        "raw": party.without_tag,
        "tag": party.tag,
        "address": address,
        "number": party.uri.user,
        "caller": party.display_name,
        "host": address.rpartition("@")[2],
    }


def _one_body_split(data: bytes) -> bytes:
    """pyVoIP splits header from body with an unbounded split; make sure there is exactly one separator."""
    head, separator, body = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n" + body.replace(b"\r\n\r\n", b"\r\n") if separator else data + b"\r\n\r\n"


class DeskSIPClient(SIP.SIPClient):
    """The SIP transaction layer with F2, F3, F4, F5 and F6 applied."""

    phone: DeskVoIPPhone  # the only phone that makes one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answers: dict[tuple[str, str], bytes] = {}  # (Call-ID, CSeq) → 200 OK, for retransmitted re-INVITEs
        self.transactions = ClientTransactions(lambda data, address: self.s.sendto(data, address), T1, T2)
        self.bind_port = self.myPort  # myPort is what we advertise (Via, Contact): the phone may set another
        self.outbound_proxy: tuple[str, int] | None = None  # in-dialog requests too go there, if set
        self.transport = "udp"  # "tcp"/"tls": self.s is one StreamSipSocket to the registrar (sip_transport)
        self.ca_file = ""
        self.media_encryption = "none"
        # SRTP keys of each call (Call-ID): ours and the peer's once agreed; for calls we place, what we offered
        self.srtp_keys: dict[str, tuple[CryptoAttribute, CryptoAttribute]] = {}
        self.srtp_offers: dict[str, list[CryptoAttribute]] = {}
        self._acks: dict[str, tuple[bytes, tuple[str, int]]] = {}  # our ACK of each placed call's 2xx
        self._answered_requests: dict[tuple[str, str, str, str], InviteResponse] = {}  # server_key → our response
        self._invite_responses: dict[tuple[str, str], InviteResponse] = {}  # (Call-ID, branch) → last response
        self._bye_answers: dict[tuple[str, str], InviteResponse] = {}  # (Call-ID, branch) → 200, for resent BYEs
        self._invite_lock = threading.Lock()
        self.dialogs: dict[str, Dialog] = {}  # outbound calls' dialogs, by Call-ID
        self._local_cseq: dict[str, int] = {}  # the CSeq of our last request in each call's dialog
        self._cseq_lock = threading.Lock()
        self.screen = SipScreen(
            allowed=ALLOWED.split(", "),
            known=KNOWN_METHODS,
            agent=USER_AGENT,
            call_exists=lambda call_id: call_id in self.phone.calls or self._bye_answered(call_id),
            # SRTP offers pass to the phone, which takes them over TLS or refuses them with a reason (srtp_media)
            media_profiles=("RTP/AVP", "RTP/SAVP"),
        )

    @property
    def t1(self) -> float:
        """RFC 3261 T1 in seconds ([sip] t1_ms); the client transactions share it."""
        return self.transactions.t1

    @t1.setter
    def t1(self, value: float) -> None:
        self.transactions.t1 = value

    @property
    def t2(self) -> float:
        return self.transactions.t2

    @t2.setter
    def t2(self, value: float) -> None:
        self.transactions.t2 = value

    @property
    def absorb_seconds(self) -> float:
        """How long a server transaction keeps its last response for retransmitted requests: 64*T1 (timers J, H),
        but at least 64 of the default 500 ms: the peer retransmits by its own T1, which may exceed ours."""
        return ACK_WAIT_T1S * max(self.t1, T1)

    @property
    def retransmissions(self) -> int:
        """Requests resent by the client transactions, plus 200 OKs resent while waiting for an ACK."""
        return self.transactions.retransmissions + self.ok_retransmissions

    ok_retransmissions = 0  # 2xx to INVITEs resent (counted by the calls)

    def forget(self, call_id: str) -> None:
        """Drop what was kept for a finished call (pyVoIP kept every call's tag for the life of the process)."""
        self.dialogs.pop(call_id, None)
        self.tagLibrary.pop(call_id, None)
        self._local_cseq.pop(call_id, None)
        self._acks.pop(call_id, None)
        self.srtp_keys.pop(call_id, None)
        self.srtp_offers.pop(call_id, None)
        for key in [key for key in self._answers if key[0] == call_id]:
            del self._answers[key]

    def gen_call_id(self) -> str:
        """Unique across restarts (pyVoIP hashed a counter starting at 1, so every run reused Call-IDs)."""
        return f"{uuid.uuid4().hex}@{self.myIP}:{self.myPort}"

    # ------------------------------------------------------------------------------------------ receiving

    def start(self) -> None:
        """Bind, register, and listen at once (pyVoIP started listening 1 s after registering, so a call
        arriving in that second waited for it)."""
        if not self.NSD:  # the softphone may have started listening already (to ping the registrar first)
            self.listen()
        self.register()

    def listen(self) -> None:
        """Bind and start receiving and the client transactions' timers, without registering (REGISTER is a
        transaction like any other: its answers come through the receive loop)."""
        if self.NSD:
            raise RuntimeError("Attempted to start already started SIPClient")
        if self.transport in ("tcp", "tls"):
            # one connection from our SIP port, kept open: every request and answer, both ways, goes over it
            # (TransportError, one line, when it cannot be opened or its certificate is not trusted)
            server = self.outbound_proxy or (self.server, self.port)
            stream = StreamSipSocket(
                server[0],
                server[1],
                "tls" if self.transport == "tls" else "tcp",
                local_ip=self.myIP,
                local_port=self.bind_port,
                ca_file=self.ca_file or None,
                on_reconnect=self._reconnected,
            )
            stream.connect()
            self.s: Any = stream
            self.transactions.reliable = True
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.s.bind((self.myIP, self.bind_port))
        self.NSD = True
        self.out = self.s
        self.transactions.start()
        self._receiver = threading.Thread(target=self.recv_loop, name="SIP receive", daemon=True)
        self._receiver.start()

    def _reconnected(self) -> None:
        """The TCP/TLS connection was re-opened (the registrar restarted, a NAT dropped it): register again at
        once, as the registrar reaches us only over the connection our REGISTER came on."""
        if self.NSD and self.registerThread is not None:
            self.registerThread.cancel()
            self.register()

    @property
    def signalling_secure(self) -> bool:
        """SIP over TLS: SDES keys may go in the SDP."""
        return self.transport == "tls"

    def security(self) -> str:
        if isinstance(self.s, StreamSipSocket):
            signalling = self.s.describe()
        else:
            signalling = f"udp to {self.server}:{self.port} (not encrypted)"
        media = "SRTP (SDES keys, RFC 4568)" if self.media_encryption == "srtp" else "RTP, not encrypted"
        return f"signalling {signalling}; media {media}"

    def stop(self) -> None:
        """Deregister (at most 2 s), end the transactions' timers, close the socket."""
        if not self.NSD:
            return
        if self.registerThread:
            self.registerThread.cancel()
            self.deregister()
        self.NSD = False
        self.transactions.stop()
        # the receiver's select() holds the socket, bound, until it returns (0.2 s at most): let it end first,
        # so a phone started next on the same port can bind it (EADDRINUSE otherwise, now and then)
        receiver = getattr(self, "_receiver", None)
        if receiver is not None and receiver is not threading.current_thread():
            receiver.join(1.0)
        self._close_sockets()

    # ------------------------------------------------------------------------------------------ registering

    def register(self) -> bool:
        """REGISTER as a client transaction (pyVoIP sent it once and read the socket itself for 30 s, holding the
        receive loop); the authentication challenge answered; re-registered before it expires."""
        try:
            registered = self._registration(deregister=False)
        except SIP.InvalidAccountInfoError as exc:
            log.warning("registration at %s:%s refused: %s", self.server, self.port, exc)
            self.phone._status = PhoneStatus.FAILED  # said at once: the softphone reports a wrong password
            registered = False
        except Exception as exc:
            log.warning("registration at %s:%s failed: %s", self.server, self.port, exc)
            registered = False
        if registered:
            self.phone._status = PhoneStatus.REGISTERED
            self.registerFailures = 0
        else:
            self.registerFailures += 1
            if self.registerFailures >= pyVoIP.REGISTER_FAILURE_THRESHOLD:
                log.error(
                    "registration at %s:%s failed %d times; giving up", self.server, self.port, self.registerFailures
                )
                threading.Thread(target=self.fatalCallback, name="SIP registration failed", daemon=True).start()
                return False
        if self.NSD:
            delay = self.default_expires - 5 if registered else min(5.0, ACK_WAIT_T1S * self.t1)
            self.registerThread = threading.Timer(delay, self.register)
            self.registerThread.name = "SIP register"
            self.registerThread.daemon = True
            self.registerThread.start()
        return registered

    def deregister(self) -> bool:
        try:
            return self._registration(deregister=True, wait=min(2.0, TIMEOUT_T1S * self.t1))
        except Exception as exc:
            log.debug("deregistration failed: %s", exc)
            return False

    def _registration(self, deregister: bool, wait: float | None = None) -> bool:
        """One REGISTER (and its authenticated repeat if challenged); whether the registrar said 2xx."""
        if not deregister:
            self.phone._status = PhoneStatus.REGISTERING
        where = (self.server, self.port)
        data = self.transactions.request(self.gen_first_response(deregister=deregister).encode("utf8"), where, wait)
        if data is None:
            raise TimeoutError(f"no answer to REGISTER within {TIMEOUT_T1S * self.t1:g} s")
        response = DeskSIPMessage(data)
        if int(response.status) in (401, 407):
            again = self.gen_register(response, deregister=deregister).encode("utf8")
            data = self.transactions.request(again, where, wait)
            if data is None:
                raise TimeoutError(f"no answer to the authenticated REGISTER within {TIMEOUT_T1S * self.t1:g} s")
            response = DeskSIPMessage(data)
            if int(response.status) in (401, 407):
                raise SIP.InvalidAccountInfoError(f"the registrar {self.server}:{self.port} refused the password")
        if 200 <= int(response.status) < 300:
            if deregister:
                self.phone._status = PhoneStatus.INACTIVE
            return True
        raise SIP.InvalidAccountInfoError(f"the registrar answered {int(response.status)} {response.status.phrase}")

    def ping(self, address: tuple[str, int] | None = None, wait: float | None = None) -> int | None:
        """OPTIONS to ``address`` (the registrar) as a client transaction: the final status, or None if none came
        within 64*T1 (a keep-alive, and what the timer E/F tests use)."""
        host, port = address or (self.server, self.port)
        tag, call_id = self.gen_tag(), self.gen_call_id()
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.myIP}:{self.myPort};branch=z9hG4bK{uuid.uuid4().hex[:20]};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{self.username}@{self.myIP}:{self.myPort}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
            f"User-Agent: {USER_AGENT}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        data = self.transactions.request(request, (host, port), wait)
        return int(data[8:11]) if data is not None and data[8:11].isdigit() else None

    def recv_loop(self) -> None:
        """Receive until stopped: woken by the socket (select), not by pyVoIP's 10 ms polling, and ended quietly
        when stop closes the socket under it (pyVoIP's loop died on the closed socket with a traceback)."""
        while self.NSD:
            try:
                ready, _, _ = select.select([self.s], [], [], 0.2)
                if ready:
                    with self.recvLock:
                        self.recv()
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                if not self.NSD:
                    return
                log.exception("SIP receive failed; receiving goes on")
                time.sleep(0.05)

    def recv(self) -> None:
        """One datagram: the screen's answer sent, or what it let through handled (see the module docstring)."""
        raw, source = self.s.recvfrom(MAX_DATAGRAM)  # BlockingIOError goes back to recv_loop, as in pyVoIP
        if raw.startswith(b"SIP/2.0 "):  # a response: to one of our client transactions?
            transaction, repeat = self.transactions.response(raw)
            if repeat:
                return  # a repeated final, absorbed (its ACK resent if it needed one)
            if transaction is not None and transaction.on_response is not None:
                transaction.on_response(raw)  # REGISTER, OPTIONS: their sender waits for it
                return
        elif self._resend_answer(raw):
            return
        verdict = self.screen.screen(raw, source)
        if verdict.reply is not None and verdict.reply_to is not None:
            self.send_answer(verdict.reply, verdict.reply_to)
        if verdict.deliver is None:
            return
        try:
            message = DeskSIPMessage(verdict.deliver)
        except Exception as exc:  # the screen let it through: pyVoIP's fault, so the sender still gets an answer
            why = f"passed the checks but pyVoIP could not parse it ({type(exc).__name__}: {exc}); answered 500"
            self.screen.faults.emit(logging.WARNING, source, why, raw)
            answer = self.screen.answer(verdict, 500, "Server Internal Error")
            if answer is not None:
                self.send_answer(*answer)
            return
        try:
            self.parse_message(message)
        except Exception:
            log.exception("error handling SIP %s", message.heading.decode(errors="replace"))

    def _resend_answer(self, raw: bytes) -> bool:
        """A retransmitted non-INVITE request we already answered gets the same response again (RFC 3261 17.2.2)
        instead of being handled twice (a second NOTIFY, INFO, CANCEL); whether it was one."""
        key = server_key(raw)
        if key is None or key[1] in ("INVITE", "ACK"):
            return False
        with self._invite_lock:
            kept = self._answered_requests.get(key)
        if kept is None or kept.until < time.monotonic():
            return False
        log.debug("retransmitted %s: last response sent again", key[1])
        self.send_answer(kept.data, kept.address)
        return True

    def _keep_answer(self, message: SIP.SIPMessage, data: bytes, address: tuple[str, int]) -> None:
        """Keep a response to a non-INVITE request for 64*T1 (timer J), for its retransmissions."""
        key = server_key(message.raw)
        if key is None:
            return
        now = time.monotonic()
        with self._invite_lock:
            for old in [old for old, kept in self._answered_requests.items() if kept.until < now]:
                del self._answered_requests[old]
            self._answered_requests[key] = InviteResponse(data, address, now + self.absorb_seconds)

    def send_answer(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one of the screen's answers; a network that refuses it costs a debug line, not the SIP thread."""
        try:
            self.s.sendto(data, address)
        except OSError as exc:
            log.debug("SIP answer to %s:%s not sent: %s", *address, exc)

    def parse_message(self, message: SIP.SIPMessage) -> None:
        if message.type == SIP.SIPMessageType.RESPONSE:
            call_id = message.headers.get("Call-ID")
            call = self.phone.calls.get(call_id) if call_id is not None else None
            if call is None and call_id is not None and self._bye_answered(call_id):
                return  # the screen passes messages of a call just hung up (for its BYE's retransmissions)
            if message.headers["CSeq"]["method"] == "REFER":
                if isinstance(call, DeskVoIPCall):
                    call.refer_answered(message)
                return
            if isinstance(call, DeskVoIPCall) and call.outbound:
                if message.headers["CSeq"]["method"] == "INVITE":
                    call.invite_response(message)
                return  # responses to our BYE or CANCEL need nothing more
        if message.type == SIP.SIPMessageType.MESSAGE:
            method = message.method
            if method == "OPTIONS":
                self.respond(message, 200, "OK", f"Allow: {ALLOWED}\r\nAccept: application/sdp\r\n")
                return
            if method == "NOTIFY":
                self._notify_received(message)
                return
            if method == "INFO":
                self.respond(message, 200, "OK")
                return
            if method == "CANCEL":
                self._cancel(message)
                return
            if method == "BYE":
                self._bye_received(message)
                return
            if method == "ACK":
                self._ack_received(message)
                return
            if method == "INVITE" and self.resend_invite_response(message):
                return
            if method == "INVITE" and message.headers.get("Call-ID") in self.phone.calls:
                self._reinvite(message)
                return
            if method not in ("INVITE", "ACK"):
                self.respond(message, 405, "Method Not Allowed", f"Allow: {ALLOWED}\r\n")
                return
        super().parse_message(message)

    def _cancel(self, message: SIP.SIPMessage) -> None:
        call = self.phone.desk_call(message.headers["Call-ID"])
        if call is None:
            self.respond(message, 481, "Call/Transaction Does Not Exist")
            return
        self.respond(message, 200, "OK")
        with call.ringing_lock:
            if call.state != CallState.RINGING:
                return  # answered first: the CANCEL came too late (RFC 3261 9.2), the call goes on
            call.cancel_reason = str(message.headers.get("Reason") or "")
            self.respond(call.request, 487, "Request Terminated", to_tag=self.tagLibrary.get(call.call_id))
            call.cancelled()

    def _bye_answered(self, call_id: str) -> bool:
        """A call that ended by a BYE we answered, still absorbing that BYE's retransmissions (the screen passes them)."""
        with self._invite_lock:
            return any(key[0] == call_id for key in self._bye_answers)

    def _bye_received(self, message: SIP.SIPMessage) -> None:
        """200 and the call ends; a retransmitted BYE (its 200 was lost) gets the same 200 for 64*T1, not 481."""
        key = self.invite_key(message)  # Call-ID and branch name this BYE's transaction too
        now = time.monotonic()
        with self._invite_lock:
            for old in [old for old, kept in self._bye_answers.items() if kept.until < now]:
                del self._bye_answers[old]
            kept = self._bye_answers.get(key)
        if kept is not None:
            self.send_answer(kept.data, kept.address)
            return
        call = self.phone.desk_call(message.headers["Call-ID"])
        if call is None:
            self.respond(message, 481, "Call/Transaction Does Not Exist")
            return
        data = self.response_text(message, 200, "OK").encode("utf8")
        address = self.reply_address(message)
        with self._invite_lock:
            self._bye_answers[key] = InviteResponse(data, address, now + self.absorb_seconds)
        self.send_answer(data, address)
        if call.state == CallState.ANSWERED:
            call.acked.set()  # the caller's BYE names our To tag: it had the 200, even if its ACK was lost
        call.remote_hangup()

    def _notify_received(self, message: SIP.SIPMessage) -> None:
        """A NOTIFY: 200 (a REFER's progress goes to its call; any other event is acknowledged and ignored),
        481 if it names a dialog (has a To-tag) that is not a call of ours, e.g. one the transfer just ended."""
        call = self.phone.desk_call(message.headers["Call-ID"])
        if call is None and message.headers.get("To", {}).get("tag"):
            self.respond(message, 481, "Subscription Does Not Exist")
            return
        self.respond(message, 200, "OK")
        event, _, params = str(message.headers.get("Event", "")).partition(";")
        if call is None or event.strip().lower() != "refer":
            return
        event_id = re.search(r"(?:^|;)\s*id\s*=\s*([^;\s]+)", params)
        status = _sipfrag_status(message)
        if status is None:
            log.warning("call %s: NOTIFY for the REFER without a sipfrag status line; ignored", call.call_id)
            return
        call.refer_notified(*status, event_id.group(1) if event_id else None)

    def _ack_received(self, message: SIP.SIPMessage) -> None:
        """An ACK: for our 2xx it confirms the call (the 200's retransmissions stop); for a non-2xx it ends the
        transaction. Either way it gets no response (RFC 3261 17.2.1)."""
        call = self.phone.desk_call(message.headers["Call-ID"])
        if call is not None and not call.outbound:
            call.acked.set()

    # -------------------------------------------------------------------------- INVITE server transactions

    @staticmethod
    def invite_key(request: SIP.SIPMessage) -> tuple[str, str]:
        """What names a server transaction: Call-ID, top Via branch (RFC 3261 17.2.3) and CSeq number (a peer
        that reuses a branch for its re-INVITE still starts a new one; an RFC 2543 request may have no branch)."""
        via = request.headers["Via"][0]
        return request.headers["Call-ID"], f"{via.get('branch') or ''} {request.headers['CSeq']['check']}"

    def send_invite_response(self, request: SIP.SIPMessage, data: bytes) -> None:
        """Send a response to an INVITE per its top Via (received/rport), kept as the transaction's last: a
        final non-2xx is kept 64*T1 to absorb late retransmissions, 1xx/2xx until the call ends."""
        final_failure = data[8:11].isdigit() and int(data[8:11]) >= 300
        until = time.monotonic() + self.absorb_seconds if final_failure else float("inf")
        address = self.reply_address(request)
        with self._invite_lock:
            self._invite_responses[self.invite_key(request)] = InviteResponse(data, address, until)
        self.send_answer(data, address)

    def resend_invite_response(self, request: SIP.SIPMessage) -> bool:
        """A retransmitted INVITE (a transaction we have) gets the last response again; whether it was one.
        Expired transactions are dropped here."""
        now = time.monotonic()
        with self._invite_lock:
            for key in [key for key, kept in self._invite_responses.items() if kept.until < now]:
                del self._invite_responses[key]
            kept = self._invite_responses.get(self.invite_key(request))
        if kept is None:
            return False
        log.debug("retransmitted INVITE %s: last response sent again", request.headers["Call-ID"])
        self.send_answer(kept.data, kept.address)
        return True

    def invite_over(self, request: SIP.SIPMessage) -> None:
        """The call ended: its INVITE transaction still absorbs retransmissions for 64*T1, then is forgotten."""
        with self._invite_lock:
            kept = self._invite_responses.get(self.invite_key(request))
            if kept is not None:
                kept.until = min(kept.until, time.monotonic() + self.absorb_seconds)

    def _reinvite(self, message: SIP.SIPMessage) -> None:
        call = self.phone.desk_call(message.headers["Call-ID"])
        if call is None:
            raise KeyError(message.headers["Call-ID"])  # ended since parse_message saw it
        key = (call.call_id, message.headers["CSeq"]["check"])
        if key not in self._answers:
            if call.state == CallState.RINGING:
                return  # a retransmitted initial INVITE: the 180 is on its way
            # a UAC starts no INVITE while its first is in progress (RFC 3261 14.1): it got our 200, so stop
            # resending it even if the ACK was lost
            call.acked.set()
            self._answers[key] = call.renegotiated(message).encode("utf8")
        self.s.sendto(self._answers[key], self.reply_address(message))

    # ------------------------------------------------------------------------------------------- replying

    @staticmethod
    def reply_address(message: SIP.SIPMessage) -> tuple[str, int]:
        """Where a response goes: the top Via's sender (RFC 3261 18.2.2, with rport/received)."""
        via = message.headers["Via"][0]
        host = via.get("received") or via["address"][0]
        port = via.get("rport") or via["address"][1]
        return host, int(port)

    def response_text(
        self,
        message: SIP.SIPMessage,
        code: int,
        phrase: str,
        extra: str = "",
        to_tag: str | None = None,
    ) -> str:
        to = message.headers["To"]
        tag = to["tag"] or to_tag or self.tagLibrary.get(message.headers["Call-ID"]) or self.gen_tag()
        lines = [f"SIP/2.0 {code} {phrase}\r\n", self._gen_response_via_header(message)]
        lines += [f"Record-Route: {rr}\r\n" for rr in getattr(message, "record_route", [])]
        from_tag = message.headers["From"]["tag"]
        lines.append(f"From: {message.headers['From']['raw']}{f';tag={from_tag}' if from_tag else ''}\r\n")
        lines.append(f"To: {to['raw']};tag={tag}\r\n")
        lines.append(f"Call-ID: {message.headers['Call-ID']}\r\n")
        lines.append(f"CSeq: {message.headers['CSeq']['check']} {message.headers['CSeq']['method']}\r\n")
        lines.append(f"User-Agent: {USER_AGENT}\r\n{extra}Content-Length: 0\r\n\r\n")
        return "".join(lines)

    def respond(
        self, message: SIP.SIPMessage, code: int, phrase: str, extra: str = "", to_tag: str | None = None
    ) -> None:
        data = self.response_text(message, code, phrase, extra, to_tag).encode("utf8")
        if message.method == "INVITE":  # kept for the INVITE's retransmissions
            self.send_invite_response(message, data)
        else:
            address = self.reply_address(message)
            self._keep_answer(message, data, address)
            self.send_answer(data, address)

    def gen_ringing(self, request: SIP.SIPMessage) -> str:
        """180 with our own Contact (pyVoIP copied the caller's into it, and raised KeyError for an RFC 2543 INVITE
        that has none), the Record-Route copied (RFC 3261 12.1.1), and a To tag kept for the call."""
        tag = self.tagLibrary[request.headers["Call-ID"]] = self.gen_tag()
        contact = f"Contact: <sip:{self.username}@{self.myIP}:{self.myPort}>\r\nAllow: {ALLOWED}\r\n"
        return self.response_text(request, 180, "Ringing", contact, to_tag=tag)

    def gen_answer(self, request: SIP.SIPMessage, sess_id: str, ms: Any, sendtype: Any) -> str:
        text = _with_record_route(super().gen_answer(request, sess_id, ms, sendtype), request)
        keys = self.srtp_keys.get(request.headers["Call-ID"])
        if keys is not None:  # SRTP: RTP/SAVP and our own key for the suite the caller offered (RFC 4568 7.1.2)
            text = with_body(text, secure_sdp(sdp_of(text), [keys[0]]))
        return text

    # --------------------------------------------------------------------------------- in-dialog requests

    def next_hop(self, dialog: Dialog) -> tuple[str, int]:
        """Where an in-dialog request goes: the first route (else the remote target), or the outbound proxy if
        the phone has one (RFC 3261 8.1.2: everything leaves through it, e.g. a NAT's or SBC's one way out)."""
        return self.outbound_proxy or dialog.next_hop()

    def dialog_of(self, request: SIP.SIPMessage) -> Dialog:
        """The dialog of a call: kept for calls we placed, derived from the INVITE for calls we took."""
        call_id = request.headers["Call-ID"]
        if call_id in self.dialogs:
            return self.dialogs[call_id]
        return Dialog(
            local=f"{request.headers['To']['raw']};tag={self.tagLibrary[call_id]}",
            remote=f"{request.headers['From']['raw']};tag={request.headers['From']['tag']}",
            # RFC 2543 allowed an INVITE without Contact: then the far end is reached at its From URI
            target=_uri_of(request.headers.get("Contact") or request.headers["From"]["raw"]),
            routes=list(getattr(request, "record_route", [])),
        )

    def in_dialog_request(self, method: str, dialog: Dialog, call_id: str, cseq: int, extra: str = "") -> str:
        """A request inside ``dialog``; ``extra`` is more header lines, each ending in CRLF."""
        routes = "".join(f"Route: {route}\r\n" for route in dialog.routes)
        return (
            f"{method} {dialog.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.myIP}:{self.myPort};branch=z9hG4bK{uuid.uuid4().hex[:20]};rport\r\n"
            f"{routes}Max-Forwards: 70\r\nFrom: {dialog.local}\r\nTo: {dialog.remote}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.username}@{self.myIP}:{self.myPort}>\r\n"
            f"{extra}User-Agent: {USER_AGENT}\r\nContent-Length: 0\r\n\r\n"
        )

    def next_cseq(self, request: SIP.SIPMessage) -> int:
        """The CSeq of our next request in this call's dialog: one more than our last, and above the INVITE's
        for a call we placed (RFC 3261 12.2.1.1; a peer may refuse a request numbered lower than an earlier one)."""
        call_id = request.headers["Call-ID"]
        with self._cseq_lock:
            floor = int(request.headers["CSeq"]["check"]) if call_id in self.dialogs else 0
            cseq = self._local_cseq[call_id] = self._local_cseq.get(call_id, floor) + 1
        return cseq

    def gen_bye(self, request: SIP.SIPMessage) -> str:
        """F5: our own single Via, our own CSeq, the route set; for calls taken and placed alike."""
        return self.in_dialog_request(
            "BYE", self.dialog_of(request), request.headers["Call-ID"], self.next_cseq(request)
        )

    def build_refer(self, request: SIP.SIPMessage, extension: str) -> Referral:
        """A REFER (RFC 3515) in the call's dialog, not sent yet: the far end is to call ``extension`` at our
        registrar. (The call keeps it before it is sent: on loopback the 202 can beat the next line.)"""
        uri = f"sip:{check_extension(extension)}@{self.server}:{self.port}"
        dialog = self.dialog_of(request)
        cseq = self.next_cseq(request)
        extra = f"Refer-To: <{uri}>\r\nReferred-By: <sip:{self.username}@{self.server}:{self.port}>\r\n"
        text = self.in_dialog_request("REFER", dialog, request.headers["Call-ID"], cseq, extra).encode("utf8")
        return Referral(extension=extension, uri=uri, cseq=cseq, text=text, next_hop=self.next_hop(dialog))

    def send_refer(self, referral: Referral) -> None:
        """Send a REFER as a client transaction (resent per timer E until answered)."""

        def timed_out(transaction: ClientTransaction) -> None:
            referral.conclude(False, None, f"no answer to the REFER within {TIMEOUT_T1S * self.t1:g} s")

        self.transactions.send(referral.text, referral.next_hop, on_timeout=timed_out)

    def bye(self, request: SIP.SIPMessage) -> None:
        """BYE to the remote target along the route set, resent per timer E until answered (timer F gives up:
        the call is over for us either way)."""
        dialog = self.dialog_of(request)
        self.transactions.send(self.gen_bye(request).encode("utf8"), self.next_hop(dialog))

    # ------------------------------------------------------------------------------------------- outbound

    def build_invite(self, number: str, media: Any, sendtype: Any) -> tuple[bytes, DeskSIPMessage, str, int]:
        """F7: an INVITE to send without waiting (pyVoIP sent and then blocked, holding the receive lock,
        until a 1xx came, forever if none did)."""
        branch = "z9hG4bK" + uuid.uuid4().hex[:24]
        call_id = self.gen_call_id()
        session_id = self.sessID.next()
        text = self.gen_invite(number, str(session_id), media, sendtype, branch, call_id)
        text = text.replace(f";branch={branch}\r\n", f";branch={branch};rport\r\n", 1)  # RFC 3581
        if self.media_encryption == "srtp":  # offer every suite we take, each with a fresh key
            offered = self.srtp_offers[call_id] = offer_attributes()
            text = with_body(text, secure_sdp(sdp_of(text), offered))
        return text.encode("utf8"), DeskSIPMessage(text.encode("utf8")), call_id, session_id

    def ack_2xx(self, invite: SIP.SIPMessage, response: SIP.SIPMessage) -> None:
        """F1: ACK the 200 with its To-tag, to its Contact, along its Record-Route (reversed), new branch.
        (pyVoIP's ACK had a random To-tag, so the callee kept resending 200 and hung up after ~32 s.)"""
        call_id = invite.headers["Call-ID"]
        sent = self._acks.get(call_id)
        if sent is not None:  # a retransmitted 200: the same ACK again (RFC 3261 13.2.2.4)
            self.send_answer(*sent)
            return
        dialog = Dialog(
            local=f"{invite.headers['From']['raw']};tag={invite.headers['From']['tag']}",
            remote=f"{response.headers['To']['raw']};tag={response.headers['To']['tag']}",
            target=_uri_of(response.headers["Contact"]),
            routes=list(reversed(getattr(response, "record_route", []))),
        )
        self.dialogs[call_id] = dialog
        ack = self.in_dialog_request("ACK", dialog, call_id, int(invite.headers["CSeq"]["check"])).encode("utf8")
        self._acks[call_id] = (ack, self.next_hop(dialog))
        self.send_answer(*self._acks[call_id])

    def ack_failure(self, invite: SIP.SIPMessage, response: SIP.SIPMessage) -> None:
        """ACK a non-2xx final response: same branch as the INVITE, hop by hop (RFC 3261 17.1.1.3); kept by the
        INVITE's transaction, which sends it again if the final is repeated."""
        ack = self._in_invite_transaction(
            "ACK", invite, f"{response.headers['To']['raw']};tag={response.headers['To']['tag']}"
        )
        key = message_key(invite.raw)
        if key is not None:
            self.transactions.ack_sent(key, ack, (self.server, self.port))
        self.send_answer(ack, (self.server, self.port))

    def cancel(self, invite: SIP.SIPMessage) -> None:
        """Give up on an unanswered INVITE: CANCEL, a client transaction of its own (timer E/F)."""
        self.transactions.send(
            self._in_invite_transaction("CANCEL", invite, invite.headers["To"]["raw"]), (self.server, self.port)
        )

    def _in_invite_transaction(self, method: str, invite: SIP.SIPMessage, to: str) -> bytes:
        """ACK (non-2xx) and CANCEL share the INVITE's branch, Request-URI and next hop."""
        via = invite.headers["Via"][0]
        return (
            f"{method} {_request_uri(invite)} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via['address'][0]}:{via['address'][1]};branch={via['branch']};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {invite.headers['From']['raw']};tag={invite.headers['From']['tag']}\r\n"
            f"To: {to}\r\nCall-ID: {invite.headers['Call-ID']}\r\n"
            f"CSeq: {invite.headers['CSeq']['check']} {method}\r\nContent-Length: 0\r\n\r\n"
        ).encode()


def _with_record_route(response: str, request: SIP.SIPMessage) -> str:
    """A UAS copies Record-Route into its responses (RFC 3261 12.1.1); pyVoIP did not."""
    record_route = getattr(request, "record_route", [])
    if not record_route:
        return response
    head, _, rest = response.partition("From: ")
    return head + "".join(f"Record-Route: {rr}\r\n" for rr in record_route) + "From: " + rest


class DTMFUnavailable(RuntimeError):
    """The far end did not offer telephone-event (RFC 4733) in its SDP, so digits cannot be sent as events
    (and in-band tones through G.711 are not sent in their place: a PBX may well not detect them)."""


@dataclass(frozen=True)
class _DtmfPacket:
    """One RFC 4733 event packet to send in place of a voice packet."""

    digit: str
    duration: int  # timestamp units from the event's start to the end of this packet
    end: bool
    first: bool  # the marker bit; the event's timestamp is taken here
    sounding: bool  # the tone plays during this packet (not a repeat of the end packet)

    def payload(self) -> bytes:
        return bytes(
            [DTMF_EVENTS.index(self.digit), (0x80 if self.end else 0) | DTMF_VOLUME, *self.duration.to_bytes(2, "big")]
        )

    def tone(self) -> bytes:
        """The 20 ms of the two-tone the far end plays for it: what the agent leg records."""
        if not self.sounding:
            return bytes(FRAME_BYTES)
        low, high = DTMF_TONES[self.digit]
        t = np.arange(self.duration - FRAME_SAMPLES, self.duration) / RATE
        wave = DTMF_TONE_AMPLITUDE * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        return wave.astype("<i2").tobytes()


def dtmf_packets(digits: str) -> list[_DtmfPacket | None]:
    """The packets that send ``digits``, one per 20 ms, None for a voice packet (the pause between digits)."""
    packets: list[_DtmfPacket | None] = []
    for digit in check_dtmf(digits):
        if packets:
            packets += [None] * DTMF_PAUSE_FRAMES
        for index in range(1, DTMF_TONE_FRAMES + 1):
            end = index == DTMF_TONE_FRAMES
            packets.append(_DtmfPacket(digit, index * FRAME_SAMPLES, end, index == 1, True))
        total = DTMF_TONE_FRAMES * FRAME_SAMPLES
        packets += [_DtmfPacket(digit, total, True, False, False)] * (DTMF_END_REPEATS - 1)
    return packets


class ReceivedRtp(NamedTuple):
    """What the receive path needs of an RTP packet (parse_packet)."""

    marker: bool
    timestamp: int
    payload: bytes


DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15; others (flash, tones) are not digits


class DeskRTPClient(RTP.RTPClient):
    """One RTP stream in 16-bit PCM: F8 (A-law sent as A-law), F9 (ordered, silence-filled receive path),
    drift-free pacing, and a hook for every frame sent and received."""

    JITTER_FRAMES = 3  # frames held back so late packets still fall into place
    MAX_GAP_SAMPLES = 60 * RATE  # a longer jump of the timestamp is a new timeline, not a minute of silence

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # RFC 3550 8.1: a random 32-bit SSRC. pyVoIP draws from 1000-65530, where two of 80 calls share one
        # about one run in twenty (seen in bench/sip_load.py: 79 streams for 80 calls), which confuses any
        # box that tells streams apart by SSRC (a recorder, an SBC, a media server)
        self.outSSRC = secrets.randbits(32)
        self._in_lock = threading.Lock()
        self._in = bytearray()
        self._in_origin: int | None = None  # RTP timestamp of the first sample in _in (after what was read)
        self._in_highest = 0  # samples received so far past the origin
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self.on_received: Callable[[bytes], None] | None = None  # each frame in order, pushed (the call's media)
        self.on_sent: Callable[[bytes], None] | None = None
        self.live_source: Callable[[], bytes] | None = None  # 20 ms of live audio (the headset) to mix in
        self.packets_sent = 0
        self.timestamp_jumps = 0  # packets whose timestamp leapt past MAX_GAP_SAMPLES (re-based, not filled)
        self._dtmf: deque[_DtmfPacket | None] = deque()  # under _out_lock; one is taken per 20 ms packet
        self._dtmf_timestamp = 0  # the RTP timestamp of the event being sent (all its packets carry it)
        self.dtmf_packets_sent = 0
        self.srtp: SrtpSession | None = None  # set before start: every packet protected / authenticated
        self._clock_start = time.monotonic()  # set again at start: packet n is due 20 ms * n after it

    def start(self) -> None:
        """Bind the stream's socket (wrapped in SRTP before the first packet can be sent or read) and join the
        process's RTP loop (rtp_loop.py): no threads of its own, unlike pyVoIP's two per stream."""
        sock = RTP_PORTS.take(self.inIP, self.inPort)  # bound when the call was given the port (rtp_ports.py)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.inIP, self.inPort))
        sock.setblocking(False)
        sock = HeldLockSocket.wrap(sock)  # type: ignore[assignment]  # sent and read without a lock hand-over
        # packets leave as build_next made them (protected already with SRTP); what arrives is authenticated
        self.sout = sock
        self.sin = SrtpSocket(sock, self.srtp) if self.srtp is not None else sock  # type: ignore[assignment]
        self._clock_start = time.monotonic()
        RTP_LOOP.add(self, self.sin, self.sout)

    def stop(self) -> None:
        """Leave the loop, then close the socket (never the other way round: its number may be reused)."""
        self.NSD = False
        sock = getattr(self, "sin", None)  # None: never started
        if sock is not None:
            RTP_LOOP.remove(sock)
            sock.close()

    # ---------------------------------------------------------------------------------------------- receive

    def parse_packet(self, packet: bytes) -> None:
        """RFC 3550 5.1's header read with a few integer operations, its header extension and padding left out
        of the payload. pyVoIP went through bit strings for each packet (4,000 a second at 80 calls, all in the
        one receiving thread) and played an extension and padding as audio (clicks from any peer that adds
        them); a telephone-event beyond its 16 digits raised out of the receiver."""
        size = len(packet)
        if size < 12:
            raise RTP.RTPParseError(f"{size} bytes: shorter than an RTP header")
        first = packet[0]
        if first >> 6 != 2:
            raise RTP.RTPParseError(f"RTP version {first >> 6} not compatible")
        start = 12 + 4 * (first & 0x0F)  # past the CSRC list
        if first & 0x10:  # a header extension: its length in 32-bit words
            if size < start + 4:
                raise RTP.RTPParseError("RTP header extension cut short")
            start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
        end = size - packet[-1] if first & 0x20 else size  # padding: its last octet counts it
        if start > end:
            raise RTP.RTPParseError("RTP header, extension or padding longer than the packet")
        number = packet[1] & 0x7F
        kind = self.assoc.get(number)
        if kind is None:
            try:
                kind = RTP.PayloadType(number)
            except ValueError:
                raise RTP.RTPParseError(f"RTP payload type {number} not found") from None
        received = ReceivedRtp(bool(packet[1] & 0x80), int.from_bytes(packet[4:8], "big"), packet[start:end])
        if kind == RTP.PayloadType.PCMU:
            self.parse_pcmu(received)
        elif kind == RTP.PayloadType.PCMA:
            self.parse_pcma(received)
        elif kind == RTP.PayloadType.EVENT:
            if received.payload and received.payload[0] < len(DTMF_EVENTS):
                if received.marker and self.dtmf is not None:
                    self.dtmf(DTMF_EVENTS[received.payload[0]])
        else:
            raise RTP.RTPParseError(f"unsupported codec {kind}")

    def parse_pcmu(self, packet: ReceivedRtp | RTP.RTPMessage) -> None:
        self._store(packet.timestamp, ULAW_TO_PCM, packet.payload)

    def parse_pcma(self, packet: ReceivedRtp | RTP.RTPMessage) -> None:
        self._store(packet.timestamp, ALAW_TO_PCM, packet.payload)

    def _store(self, timestamp: int, table: np.ndarray, payload: bytes) -> None:
        """Decode a packet straight into its place in the jitter buffer (one copy), then push what is ready."""
        codes = np.frombuffer(payload, dtype=np.uint8)
        with self._in_lock:
            if self._in_origin is None:
                self._in_origin = timestamp
            offset = (timestamp - self._in_origin) % (1 << 32)
            if offset >= 1 << 31:
                return  # older than what was already read
            if offset - self._in_highest > self.MAX_GAP_SAMPLES:
                # a sender's restart, or a hostile packet: filling the gap could ask for gigabytes
                self.timestamp_jumps += 1
                if self.timestamp_jumps == 1:
                    log.warning(
                        "RTP timestamp from %s:%s leapt %.0f s ahead; following it without filling the gap",
                        self.outIP,
                        self.outPort,
                        (offset - self._in_highest) / RATE,
                    )
                self._in_origin = (timestamp - self._in_highest) % (1 << 32)
                offset = self._in_highest
            end = (offset + len(codes)) * SAMPLE_WIDTH
            if end > len(self._in):
                self._in.extend(bytes(end - len(self._in)))  # gaps are silence: zeros in 16-bit PCM
            np.take(table, codes, out=np.frombuffer(self._in, dtype="<i2")[offset : offset + len(codes)])
            self._in_highest = max(self._in_highest, end // SAMPLE_WIDTH)
        if self.on_received is not None:
            self.push_received()

    def push_received(self, flush: bool = False) -> None:
        """Hand every frame that is ready (all of them with ``flush``) to ``on_received``, in order."""
        handler = self.on_received
        while handler is not None and (frame := self.read_frame(flush)) is not None:
            try:
                handler(frame)
            except Exception:
                log.exception("the received audio's handler failed; the call goes on without it")
                self.on_received = handler = None

    def read_frame(self, flush: bool = False) -> bytes | None:
        """The next 20 ms of received audio (16-bit), or None if it has not arrived yet."""
        with self._in_lock:
            ready = self._in_highest >= FRAME_SAMPLES * (1 + (0 if flush else self.JITTER_FRAMES))
            if not ready and not (flush and self._in):
                return None
            with memoryview(self._in) as view:
                frame = bytes(view[:FRAME_BYTES])  # one copy
            if len(frame) < FRAME_BYTES:
                frame = frame.ljust(FRAME_BYTES, b"\x00")
            del self._in[:FRAME_BYTES]
            self._in_highest = max(0, self._in_highest - FRAME_SAMPLES)
            if self._in_origin is not None:
                self._in_origin = (self._in_origin + FRAME_SAMPLES) % (1 << 32)
            return frame

    def read(self, length: int = FRAME_SAMPLES, blocking: bool = True) -> bytes:
        """pyVoIP's reader, kept for callers of the stock API: 8-bit unsigned, never blocking."""
        frame = self.read_frame()
        if frame is None:
            return b"\x80" * length
        return (np.frombuffer(frame, dtype="<i2") // 256 + 128).astype(np.uint8).tobytes()[:length]

    # ------------------------------------------------------------------------------------------------ send

    def write(self, data: bytes) -> None:
        """Queue 16-bit PCM at 8 kHz to be sent."""
        with self._out_lock:
            self._out.extend(data)

    def pending_send_seconds(self) -> float:
        with self._out_lock:
            return len(self._out) / SAMPLE_WIDTH / RATE

    def clear_send(self) -> None:
        with self._out_lock:
            self._out.clear()

    @property
    def dtmf_payload_type(self) -> int | None:
        """The payload type negotiated for telephone-event (typically 101), None if the far end has none."""
        return next((int(number) for number, kind in self.assoc.items() if kind == RTP.PayloadType.EVENT), None)

    def send_dtmf(self, digits: str) -> float:
        """Queue ``digits`` as RFC 4733 events (after any still queued); the seconds until the last is sent.

        Each digit is 100 ms of event packets (marker bit on the first, the duration growing by 160 per packet,
        the end packet three times), each in place of a voice packet: the same SSRC, sequence numbers and
        clock, so the far end's jitter buffer sees no gap. The voice they displace is dropped (the queued
        prompt and the microphone move on in real time); the agent leg records the tone instead."""
        packets = dtmf_packets(digits)
        if self.dtmf_payload_type is None:
            raise DTMFUnavailable(
                f"the far end ({self.outIP}:{self.outPort}) did not offer telephone-event (RFC 4733) in its SDP"
            )
        with self._out_lock:
            if self._dtmf:
                self._dtmf.extend([None] * DTMF_PAUSE_FRAMES)
            self._dtmf.extend(packets)
            return len(self._dtmf) * FRAME_SECONDS

    def _next_packet(self) -> tuple[bytes, bytes]:
        """The next RTP packet, and the 20 ms of audio it stands for (what the agent leg records)."""
        with self._out_lock:
            frame = bytes(self._out[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\x00")
            del self._out[:FRAME_BYTES]
            event = self._dtmf.popleft() if self._dtmf else None
        if self.live_source is not None:
            frame = self._mix_live(frame)  # consumed even under an event: the microphone runs in real time
        event_type = self.dtmf_payload_type if event is not None else None  # looked up only under an event
        if event is None or event_type is None:
            return self._rtp_header(int(self.preference), self.outTimestamp) + self.encode_packet(frame), frame
        if event.first:
            self._dtmf_timestamp = self.outTimestamp  # every packet of the event carries its start
        self.dtmf_packets_sent += 1
        marked = (0x80 if event.first else 0) | event_type
        return self._rtp_header(marked, self._dtmf_timestamp) + event.payload(), event.tone()

    def _rtp_header(self, marker_and_type: int, timestamp: int) -> bytes:
        return (
            b"\x80"
            + bytes([marker_and_type])
            + (self.outSequence % 65536).to_bytes(2, "big")
            + (timestamp % (1 << 32)).to_bytes(4, "big")
            + self.outSSRC.to_bytes(4, "big")
        )

    def _mix_live(self, frame: bytes) -> bytes:
        """Queued prompt audio plus the live source (the agent may talk over a prompt), clipped to 16 bits."""
        try:
            live = self.live_source() if self.live_source is not None else b""
        except Exception:
            log.exception("live audio source failed; the caller gets the prompt audio only")
            self.live_source = None
            return frame
        if len(live) != FRAME_BYTES:
            return frame
        mixed = np.frombuffer(frame, dtype="<i2").astype(np.int32) + np.frombuffer(live, dtype="<i2")
        return np.clip(mixed, -32768, 32767).astype("<i2").tobytes()

    def encode_packet(self, payload: bytes) -> bytes:
        if self.preference == RTP.PayloadType.PCMA:
            return pcm16_to_alaw(payload)
        return pcm16_to_ulaw(payload)

    def next_due(self) -> float:
        """When the next packet is due: the stream's start + 20 ms per packet sent (an absolute clock, so a
        late packet is followed by one on time and the pace never drifts)."""
        return self._clock_start + self.packets_sent * FRAME_SECONDS

    def build_next(self) -> tuple[bytes, tuple[str, int]]:
        """The next packet as it goes on the wire (SRTP-protected if the call is), and where to: the RTP loop
        asks for it shortly before it is due and sends it on time. What it carries counts as sent."""
        packet, frame = self._next_packet()
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        if self.on_sent is not None:
            self.on_sent(frame)
        self.outSequence += 1
        self.outTimestamp += FRAME_SAMPLES
        self.packets_sent += 1
        return packet, (self.outIP, self.outPort)

    def receive_packet(self, packet: bytes) -> None:
        """One datagram from the far end (the RTP loop's receiver): pyVoIP parses it, F9's path stores it."""
        try:
            self.parse_packet(packet)
        except RTP.RTPParseError as exc:
            log.debug("RTP packet from %s:%s ignored: %s", self.outIP, self.outPort, exc)


class DeskVoIPCall(VoIPCall):
    """A call whose media streams are DeskRTPClients, with cancel, remote hang-up and re-INVITE handled."""

    BUSY: ClassVar[frozenset[int]] = frozenset({486, 600, 603})
    NO_ANSWER: ClassVar[frozenset[int]] = frozenset({408, 480, 487})

    phone: DeskVoIPPhone
    sip: DeskSIPClient  # pyVoIP sets it to phone.sip

    def __init__(self, phone: DeskVoIPPhone, *args: Any, outbound: bool = False, **kwargs: Any) -> None:
        self.created_at = datetime.now(UTC)  # the INVITE has just arrived (or been sent)
        self.outbound = outbound
        self.outcome: str | None = None  # placed calls: answered | busy | no_answer | failed
        self.outcome_reason = ""
        self.settled = threading.Event()  # a placed call got its final answer
        self.remote_ringing = threading.Event()
        self.ended = threading.Event()
        self.hung_up_by: str | None = None  # customer | agent | system | transfer
        self.end_reason = ""
        self.transferred_to: str | None = None  # the extension a completed blind transfer handed the caller to
        self.referral: Referral | None = None  # the latest transfer attempt
        # answering and a CANCEL both end the ringing: one at a time, so an answer never meets half a CANCEL
        # (pyVoIP's answer raised KeyError once the CANCEL had dropped the call's tag)
        self.ringing_lock = threading.Lock()
        self._referral_lock = threading.Lock()
        self.on_dtmf: Callable[[str], None] | None = None  # each digit as it arrives, pushed
        self.cancel_reason = ""  # the CANCEL's Reason header (RFC 3326), if the caller's side gave one
        self.acked = threading.Event()  # the caller's ACK for our 200 arrived: the call is connected
        self.not_connected = False  # answered, but no ACK came within 64*T1: ended with a BYE, never connected
        super().__init__(phone, *args, **kwargs)

    @property
    def media_streams(self) -> list[DeskRTPClient]:
        """``RTPClients`` as what they are: create_rtp_clients, where pyVoIP makes them, makes DeskRTPClients."""
        if not _all_instances(self.RTPClients, DeskRTPClient):
            raise TypeError(f"call {self.call_id}: a media stream is not a DeskRTPClient")
        return self.RTPClients

    def __del__(self) -> None:
        """pyVoIP's __del__ releases the call's ports under the phone's lock; run by the garbage collector inside
        release_ports (which holds that lock) it deadlocked the thread, and every later hang-up with it. Ports are
        released by _finish; a call collected without it gives its ports back only if the lock is free at once
        (else pyVoIP's request_port frees them when it runs short: they belong to no call)."""
        if not getattr(self, "assignedPorts", None) or not hasattr(self, "phone"):
            return
        lock = self.phone.portsLock
        if lock.acquire(blocking=False):
            try:
                for port in self.assignedPorts:
                    if port in self.phone.assignedPorts:
                        self.phone.assignedPorts.remove(port)
                RTP_PORTS.release(self.myIP, list(self.assignedPorts))
            finally:
                lock.release()

    def dtmf_callback(self, code: str) -> None:
        """A digit (RFC 4733): kept for ``get_dtmf`` (IVRs read them) and pushed to ``on_dtmf``."""
        super().dtmf_callback(code)
        handler = self.on_dtmf
        if handler is not None:
            try:
                handler(code)
            except Exception:
                log.exception("the DTMF handler failed; the call goes on")

    def create_rtp_clients(self, codecs: Any, ip: str, port: int, request: SIP.SIPMessage, baseport: int) -> None:
        self.assignedPorts[port] = codecs  # pyVoIP never recorded an answered call's port: it leaked or was reused
        for index in range(len(request.body["c"])):
            self.RTPClients.append(
                DeskRTPClient(
                    codecs,
                    ip,
                    port,
                    request.body["c"][index]["address"],
                    baseport + index,
                    self.sendmode,
                    dtmf=self.dtmf_callback,
                )
            )
        keys = self.sip.srtp_keys.get(self.call_id)
        if keys is not None:
            for client in self.media_streams:
                client.srtp = SrtpSession(*keys)

    def _finish(self, by: str, reason: str) -> None:
        for client in self.RTPClients:
            if hasattr(client, "sin"):  # started (answered); a call that only rang has no sockets
                client.stop()
        self.state = CallState.ENDED
        self.hung_up_by = self.hung_up_by or by
        self.end_reason = self.end_reason or reason
        self.phone.calls.pop(self.call_id, None)
        if not self.outbound:
            self.sip.invite_over(self.request)
        self.phone.release_ports(call=self)
        self.assignedPorts = {}  # released: pyVoIP's __del__ must not release them again
        self.sip.forget(self.call_id)
        referral = self.referral
        if referral is not None and by != "transfer":  # wakes a transfer still waiting: the call ended under it
            referral.conclude(False, None, f"the call ended before the transfer completed ({reason})")
        self.ended.set()

    def cancelled(self) -> None:
        """F2: the caller hung up while it rang."""
        self._finish("customer", "cancelled")

    def remote_hangup(self) -> None:
        self._finish("customer", "bye")

    def hangup(self) -> None:
        if self.state != CallState.ANSWERED:
            raise InvalidStateError("Call is not answered")
        self.sip.bye(self.request)
        self._finish("agent", "hangup")

    def deny(self, code: int = 486, phrase: str = "Busy Here") -> None:
        """Refuse a ringing call (pyVoIP's deny crashed on the RTP sockets it never opened)."""
        with self.ringing_lock:
            if self.state != CallState.RINGING:
                raise InvalidStateError("Call is not ringing")
            self.sip.respond(self.request, code, phrase)
            self._finish("agent", "rejected")

    def answer(self) -> None:
        """200 OK per the top Via (pyVoIP sent it to the registrar: a caller not behind it never connected),
        then retransmitted until the ACK (RFC 3261 13.3.1.4); see :meth:`_await_ack`."""
        with self.ringing_lock:
            if self.state != CallState.RINGING:
                raise InvalidStateError("Call is not ringing")
            media = self.gen_ms()
            text = self.sip.gen_answer(self.request, self.session_id, media, self.sendmode).encode("utf8")
            self.state = CallState.ANSWERED
            self.sip.send_invite_response(self.request, text)
        threading.Thread(target=self._await_ack, args=(text,), name=f"2xx {self.call_id}", daemon=True).start()

    def _await_ack(self, text: bytes) -> None:
        """Resend the 200 at T1, 2*T1, ... capped at T2 until the ACK comes or the call ends; no ACK within
        64*T1: BYE, and the call ends ``not_connected`` (the caller never heard the answer)."""
        t1, t2 = self.sip.t1, self.sip.t2
        address = self.sip.reply_address(self.request)
        started = time.monotonic()
        interval, deadline = t1, started + ACK_WAIT_T1S * t1
        resend_at = started + interval
        while not self.acked.wait(max(0.0, min(resend_at, deadline) - time.monotonic())):
            if self.ended.is_set():
                return
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= resend_at:
                self.sip.send_answer(text, address)
                self.sip.ok_retransmissions += 1
                interval = min(interval * 2, t2)
                resend_at += interval
        else:
            log.debug("call %s: ACK after %.3f s", self.call_id, time.monotonic() - started)
            return
        with self.ringing_lock:
            if self.ended.is_set() or self.acked.is_set():
                return
            self.not_connected = True
        log.warning(
            "call %s: no ACK for the 200 OK within %.1f s (sent to %s:%s); BYE sent, stored as not connected",
            self.call_id,
            ACK_WAIT_T1S * t1,
            *address,
        )
        try:
            self.sip.bye(self.request)
        except OSError as exc:
            log.debug("BYE for call %s not sent: %s", self.call_id, exc)
        self._finish("system", "no ACK")

    def renegotiated(self, request: SIP.SIPMessage) -> str:
        """F6: answer a re-INVITE with the streams already running; follow the new address."""
        media = {client.inPort: client.assoc for client in self.RTPClients}
        for description in request.body.get("m", []):
            if description["type"] != "audio":
                continue
            for index, client in enumerate(self.RTPClients):
                client.outIP = request.body["c"][min(index, len(request.body["c"]) - 1)]["address"]
                client.outPort = description["port"] + index
        self.sip.tagLibrary.setdefault(self.call_id, self.sip.gen_tag())
        return self.sip.gen_answer(request, self.session_id, media, self.sendmode)

    def invite_response(self, response: SIP.SIPMessage) -> None:
        """A response to the INVITE of a call we placed (F7: every final answer is handled)."""
        code = int(response.status)
        if code < 200:
            if code in (180, 183):
                self.remote_ringing.set()
            return
        if 200 <= code < 300:
            self.sip.ack_2xx(self.request, response)  # also for a retransmitted 200
            if self.state == CallState.DIALING:
                if not self._srtp_agreed(response):
                    return
                try:
                    self.answered(response)
                except OSError as exc:  # the media could not start: a call with no sound is not answered
                    log.warning("call %s: answered, but its media could not start (%s); hanging up", self.call_id, exc)
                    self._end_unusable(response, "the media could not start")
                    return
                self._settle("answered", f"{code} {response.status.phrase}")
            return
        self.sip.ack_failure(self.request, response)
        outcome = "busy" if code in self.BUSY else "no_answer" if code in self.NO_ANSWER else "failed"
        self._settle(outcome, f"{code} {response.status.phrase}")
        self._finish("system", self.outcome_reason)

    def _srtp_agreed(self, response: SIP.SIPMessage) -> bool:
        """For a call we offered SRTP: the keys the callee's answer chose, kept for the media streams. An answer
        without them (plain RTP, or none of our attributes) is not a call we may carry: BYE, outcome failed."""
        offered = self.sip.srtp_offers.get(self.call_id)
        if offered is None:
            return True
        try:
            self.sip.srtp_keys[self.call_id] = accepted_attribute(
                sdp_of(bytes(response.raw).decode("utf8", "replace")), offered
            )
            return True
        except SrtpRefused as exc:
            log.warning("call %s: %s", self.call_id, exc)
        self._end_unusable(response, "the callee did not accept SRTP")
        return False

    def _end_unusable(self, response: SIP.SIPMessage, reason: str) -> None:
        """The callee answered a call we cannot carry: the dialog exists, so BYE it; the outcome is failed."""
        self.request.headers["Contact"] = response.headers["Contact"]
        self.request.headers["To"]["tag"] = response.headers["To"]["tag"]
        self.state = CallState.ANSWERED
        try:
            self.sip.bye(self.request)
        except OSError as exc:
            log.debug("BYE for call %s not sent: %s", self.call_id, exc)
        self._settle("failed", reason)
        self._finish("system", self.outcome_reason)

    def invite_timed_out(self) -> None:
        """Timer B: not even a provisional answer to our INVITE within 64*T1: the call failed (the far end or the
        way to it is down), said so instead of waiting for an answer that cannot come."""
        if self.state != CallState.DIALING:
            return
        self._settle("failed", f"no response to the INVITE within {TIMEOUT_T1S * self.sip.t1:g} s")
        self._finish("system", self.outcome_reason)

    def _settle(self, outcome: str, reason: str) -> None:
        if self.outcome is None:
            self.outcome, self.outcome_reason = outcome, reason
        self.settled.set()

    def give_up(self, reason: str = "no answer") -> None:
        """Stop ringing the far end (a placed call not answered in time): CANCEL, outcome no_answer."""
        if self.state != CallState.DIALING:
            return
        self._settle("no_answer", reason)
        self.sip.cancel(self.request)

    def abandon(self, reason: str) -> None:
        """Forget a placed call whose far end never confirmed our CANCEL (release its port)."""
        self._settle("no_answer", reason)
        self._finish("system", reason)

    def write_audio(self, data: bytes) -> None:
        """Queue 16-bit, 8 kHz PCM for the caller."""
        for client in self.RTPClients:
            client.write(data)

    def send_dtmf(self, digits: str) -> float:
        """Send ``digits`` to the far end as RFC 4733 events; the seconds until the last is sent.
        DTMFUnavailable if the far end's SDP did not offer telephone-event."""
        check_dtmf(digits)
        if self.state != CallState.ANSWERED:
            raise InvalidStateError("Call is not answered")
        streams = self.media_streams
        if not streams:
            raise DTMFUnavailable(f"call {self.call_id} has no media stream")
        return streams[0].send_dtmf(digits)

    # ------------------------------------------------------------------------------------ blind transfer

    def transfer(self, extension: str, timeout: float, refer_timeout: float = REFER_TIMEOUT) -> Referral:
        """Blind transfer (RFC 3515): REFER the far end to ``extension`` and wait, at most ``timeout`` s, for
        the outcome: the final sipfrag of its call to the target (2xx: we hang up and the call ends with
        ``hung_up_by == "transfer"``), a refused REFER, or silence (no answer to the REFER in
        ``refer_timeout`` s). Whatever fails leaves the call up. InvalidStateError if it is not answered or a
        transfer is already under way."""
        check_extension(extension)
        refer_timeout = min(refer_timeout, timeout)
        with self._referral_lock:
            if self.state != CallState.ANSWERED:
                raise InvalidStateError("Call is not answered")
            if self.referral is not None and not self.referral.done.is_set():
                raise InvalidStateError("a transfer of this call is already under way")
            referral = self.referral = self.sip.build_refer(self.request, extension)
            referral.sent_at = time.monotonic()
            self.sip.send_refer(referral)
        log.info("call %s: REFER to %s", self.call_id, referral.uri)
        # the REFER's transaction resends it (timer E); here we only wait for an answer, at most refer_timeout
        if not referral.responded.wait(max(0.0, referral.sent_at + refer_timeout - time.monotonic())):
            referral.conclude(False, None, f"no answer to the REFER within {refer_timeout:g} s")
        if not referral.done.wait(max(0.0, referral.sent_at + timeout - time.monotonic())):
            reason = f"the transfer did not complete within {timeout:g} s{referral.last_heard()}"
            referral.conclude(False, None, reason)
        log.info(
            "call %s: transfer to %s %s (%s)",
            self.call_id,
            extension,
            "done" if referral.ok else "failed",
            referral.reason,
        )
        return referral

    def refer_answered(self, response: SIP.SIPMessage) -> None:
        """The final answer to our REFER: 2xx (202 Accepted) means wait for NOTIFYs; anything else refuses."""
        referral, code = self.referral, int(response.status)
        if referral is None or response.headers["CSeq"]["check"] != str(referral.cseq) or code < 200:
            return
        referral.refer_status = code
        referral.responded.set()
        if code >= 300:
            referral.conclude(False, code, f"the REFER was refused: {code} {response.status.phrase}")

    def refer_notified(self, status: int, phrase: str, event_id: str | None) -> None:
        """A sipfrag status of the transferee's call to the target (its NOTIFY is already answered 200)."""
        referral = self.referral
        if referral is None or (event_id is not None and event_id != str(referral.cseq)):
            return
        if referral.done.is_set() and referral.status is not None:
            return  # decided already by a final status (a refusal, a failed sipfrag): nothing can undo that
        referral.responded.set()  # a NOTIFY may overtake the 202
        referral.progress.append((status, phrase, time.monotonic() - referral.sent_at))
        if status < 200:
            return
        if status >= 300:
            referral.conclude(False, status, f"the transfer target answered {status} {phrase}".strip())
            return
        with self._referral_lock:  # our leg is hung up before transfer() returns ok
            if self.state == CallState.ANSWERED:
                # even if we gave up waiting: the caller is talking to the target now, our leg is of no use
                self.transferred_to = referral.extension
                self.sip.bye(self.request)
                self._finish("transfer", f"transferred to {referral.extension}")
        if not referral.conclude(True, status, f"{status} {phrase}".strip()):
            log.warning("call %s: the transfer to %s completed after it was given up", self.call_id, referral.uri)


class DeskVoIPPhone(VoIPPhone):
    """pyVoIP's phone with the corrected SIP client and calls."""

    sip: DeskSIPClient

    def __init__(
        self,
        server: str,
        port: int,
        username: str,
        password: str,
        *,
        myIP: str,
        callCallback: Callable[[DeskVoIPCall], None] | None,
        sipPort: int,
        rtpPortLow: int,
        rtpPortHigh: int,
        t1: float = T1,
        t2: float = T2,
        contact_port: int | None = None,
        outbound_proxy: tuple[str, int] | None = None,
        transport: str = "udp",
        ca_file: str = "",
        media_encryption: str = "none",
    ) -> None:
        # pyVoIP's callCallback is typed for any VoIPCall and read only by _callback_MSG_Invite, overridden
        # below; ours takes the DeskVoIPCalls this phone makes, so it is kept as on_call instead.
        super().__init__(
            server,
            port,
            username,
            password,
            myIP=myIP,
            callCallback=None,
            sipPort=sipPort,
            rtpPortLow=rtpPortLow,
            rtpPortHigh=rtpPortHigh,
        )
        self.on_call = callCallback
        self.sip = DeskSIPClient(
            server,
            port,
            username,
            password,
            phone=self,
            myIP=myIP,
            myPort=sipPort,
            callCallback=self.callback,
            fatalCallback=self.fatal,
        )
        self.sip.t1, self.sip.t2 = t1, t2
        if contact_port is not None:  # a static NAT or relay in front of us: advertise its port, bind ours
            self.sip.myPort = contact_port
        self.sip.outbound_proxy = outbound_proxy
        if media_encryption == "srtp" and transport != "tls":  # the settings refuse it too: keys never in clear
            raise ValueError('media_encryption "srtp" needs transport "tls": the SDES keys travel in the SDP')
        self.sip.transport, self.sip.ca_file = transport, ca_file
        self.media_encryption = self.sip.media_encryption = media_encryption

    def security(self) -> str:
        """How signalling and media travel (the startup lines)."""
        return self.sip.security()

    def desk_call(self, call_id: str) -> DeskVoIPCall | None:
        """The call with this Call-ID while it is on; _create_Call and place_call make only DeskVoIPCalls."""
        call = self.calls.get(call_id)
        if call is not None and not isinstance(call, DeskVoIPCall):
            raise TypeError(f"call {call_id} is a {type(call).__name__}, not a DeskVoIPCall")
        return call

    def desk_calls(self) -> list[DeskVoIPCall]:
        """The calls on now (a copy)."""
        calls = list(self.calls.values())
        if not _all_instances(calls, DeskVoIPCall):
            raise TypeError("a call is not a DeskVoIPCall")
        return calls

    def _callback_MSG_Invite(self, request: SIP.SIPMessage) -> None:  # pyVoIP's name
        """A new call: 180 at once, then the desk's call thread at once (pyVoIP waited a fixed 1 s first,
        which made one ring of under a second impossible and skewed every ring count)."""
        call_id = request.headers["Call-ID"]
        if call_id in self.calls:
            return  # retransmission; re-INVITEs are handled by DeskSIPClient
        if self.on_call is None:
            self.sip.respond(request, 486, "Busy Here")
            return
        if not self._media_acceptable(request):
            return
        session_id = random.randint(1, 100000)
        trying = re.sub(
            r"^(To: [^\r\n]*?);tag=[^;\r\n]*", r"\1", self.sip.response_text(request, 100, "Trying"), flags=re.M
        )
        self.sip.send_invite_response(request, trying.encode("utf8"))  # RFC 3261 17.2.1, no To tag (8.2.6.2)
        self.sip.send_invite_response(request, self.sip.gen_ringing(request).encode("utf8"))
        try:
            self._create_Call(request, session_id)
        except NoRtpPortError as exc:
            log.warning("call %s refused with 503: %s", call_id, exc)
            self.sip.respond(request, 503, "Service Unavailable")
            return
        except Exception:  # the screen passed the offer but pyVoIP could not take it: end the INVITE, not silence
            log.exception("call %s could not be set up; answered 500", call_id)
            self.sip.respond(request, 500, "Server Internal Error")
            return
        thread = threading.Thread(target=self.on_call, args=(self.calls[call_id],), name=f"call {call_id}", daemon=True)
        thread.start()

    def _media_acceptable(self, request: SIP.SIPMessage) -> bool:
        """Whether the offer's media protection fits the settings: SRTP only over TLS, and only if media is
        to be encrypted; plain RTP only if it is not. Else 488 and one log line saying why. An SRTP call's
        keys (ours fresh, the caller's first usable one) are kept for its answer and its media streams."""
        call_id = request.headers["Call-ID"]
        try:
            offered = check_offer(
                sdp_of(bytes(request.raw).decode("utf8", "replace")),
                encryption=self.media_encryption,
                signalling_secure=self.sip.signalling_secure,
            )
        except SrtpRefused as exc:
            caller = request.headers.get("From", {}).get("raw", "?")
            log.warning("call %s from %s %s; answered 488", call_id, caller, exc)
            self.sip.respond(request, exc.status, exc.phrase)
            return False
        if offered is not None:
            self.sip.srtp_keys[call_id] = (answer_attribute(offered), offered)
        return True

    def _create_Call(self, request: SIP.SIPMessage, sess_id: int) -> None:  # pyVoIP's name
        self.calls[request.headers["Call-ID"]] = DeskVoIPCall(
            self, CallState.RINGING, request, sess_id, self.myIP, sendmode=self.recvmode
        )

    def request_port(self, blocking: bool = True) -> int:
        """A port of the RTP range with a socket already bound to it (rtp_ports.py): pyVoIP chose one no call
        of its own held and bound it at the answer, when another socket may have had it. ``blocking`` is
        pyVoIP's; a range used up raises NoRtpPortError after one clean-up of dead calls, as pyVoIP did."""
        for attempt in range(2):
            with self.portsLock:
                try:
                    port = RTP_PORTS.reserve(self.myIP, self.rtpPortLow, self.rtpPortHigh, set(self.assignedPorts))
                except NoRtpPortError:
                    if attempt:
                        raise
                else:
                    self.assignedPorts.append(port)
                    return port
            self.release_ports()
        raise AssertionError("unreachable")

    def release_ports(self, call: VoIPCall | None = None) -> None:
        """pyVoIP's, and the reserved sockets of ports whose stream never started are closed with them."""
        before = set(self.assignedPorts)
        super().release_ports(call)
        RTP_PORTS.release(self.myIP, before - set(self.assignedPorts))

    def place_call(self, number: str) -> DeskVoIPCall:
        """Send the INVITE and return the dialing call at once; its ``settled`` event says how it went."""
        port = self.request_port()
        media = {port: {0: RTP.PayloadType.PCMU, 8: RTP.PayloadType.PCMA, 101: RTP.PayloadType.EVENT}}
        text, invite, call_id, session_id = self.sip.build_invite(number, media, RTP.TransmitType.SENDRECV)
        call = DeskVoIPCall(
            self, CallState.DIALING, invite, session_id, self.myIP, ms=media, sendmode=self.sendmode, outbound=True
        )
        self.calls[call_id] = call  # before sending: on loopback the answer can beat the next line
        self.sip.transactions.send(text, (self.server, self.port), on_timeout=lambda _: call.invite_timed_out())
        return call

    def _callback_MSG_Bye(self, request: SIP.SIPMessage) -> None:
        """Handled in DeskSIPClient (with the right response); pyVoIP's own handler is not used."""
