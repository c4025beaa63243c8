"""One SIP call as the rest of the desk sees it, the same for calls taken and calls placed.

Only the telephony layer knows pyVoIP; everything above talks to :class:`Call`. Audio does not go through
here frame by frame: :meth:`Call.attach_media` has the RTP threads push both legs (and DTMF) straight into
the call's :class:`~contactcenter.media.call_media.CallMedia`.

A blind transfer (:meth:`Call.transfer`) ends the call with ``hung_up_by == "transfer"`` and
``transferred_to`` set; the stored record has no such value (``hung_up_first`` is customer, agent or
system), so it counts there as the agent's hang-up, which it is.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contactcenter.media.call_media import CallMedia
from contactcenter.records import Direction
from contactcenter.telephony.pyvoip_adapter import (
    CallState,
    DeskVoIPCall,
    InvalidStateError,
    check_dtmf,
    check_extension,
)
from contactcenter.telephony.pyvoip_adapter import (
    DTMFUnavailable as DTMFUnavailable,  # re-exported: what send_dtmf raises
)

CallNotRinging = InvalidStateError  # what answer() raises when the caller hung up in the same instant
CallNotAnswered = InvalidStateError  # what send_dtmf() raises on a call that is not (or no longer) answered


def transfer_target(target: str) -> str:
    """The extension to transfer to, from what the agent typed (surrounding spaces dropped); ValueError unless
    it is a plain extension: 1 to 32 of digits, letters and ``* + _ . -``. Checked before anything is sent,
    because it goes into the REFER's Refer-To header as it is."""
    if not isinstance(target, str):
        raise ValueError(f"not an extension: {target!r}")
    return check_extension(target.strip())


@dataclass(frozen=True)
class TransferResult:
    """How a blind transfer went. ``ok``: the transferee reached the target and our leg is hung up.
    ``status``: the SIP status that decided it (the REFER's refusal, or the target's final answer as the
    transferee reported it), None if none came in time (the reason then says what was last heard).
    ``reason``: for the agent, in words."""

    ok: bool
    status: int | None
    reason: str


TEAM_HEADER = "x-cc-team"  # added by the team registrar (kamailio.cfg route[TEAM]); a caller's own is removed
_REASON_ANSWERED = re.compile(r"^\s*SIP\s*;(?:.*;)?\s*cause\s*=\s*200\s*(?:;|$)", re.IGNORECASE)


def cancelled_as_answered_elsewhere(reason: str) -> bool:
    """Whether a CANCEL's Reason header says the call was answered elsewhere: protocol SIP, cause exactly 200
    (not 2000, not Q.850, not the words inside a text parameter)."""
    for value in reason.split(","):
        without_text = re.sub(r'text\s*=\s*"[^"]*"', "", value, flags=re.IGNORECASE)
        if _REASON_ANSWERED.match(without_text):
            return True
    return False


def team_routing(headers: Mapping[str, Any]) -> tuple[str, datetime | None]:
    """The team number and the moment the caller started waiting, from the X-CC-Team header the team
    registrar adds ("1000;arrived=1764489600.123456"); ("", None) when it is no team call. A time that cannot
    be read is None (the desk then counts from its own INVITE)."""
    value = next((str(v) for k, v in headers.items() if str(k).lower() == TEAM_HEADER), "")
    number, _, params = value.partition(";")
    number = number.strip()
    if not re.fullmatch(r"[0-9]{1,16}", number):
        return "", None
    found = re.search(r"(?:^|;)\s*arrived\s*=\s*([0-9]{9,11}(?:\.[0-9]{1,6})?)\s*(?:;|$)", params)
    if found is None:
        return number, None
    return number, datetime.fromtimestamp(float(found.group(1)), UTC)


class Call:
    """A call in either direction: who is on the other end, its state, and what can be done with it."""

    def __init__(self, voip_call: DeskVoIPCall, direction: Direction) -> None:
        self._call = voip_call
        self.direction: Direction = direction
        self.invited_at: datetime = voip_call.created_at
        self.sip_call_id: str = voip_call.call_id
        party = voip_call.request.headers["To" if direction == "outbound" else "From"]
        self.remote_number: str = party.get("number") or ""
        self.caller_name: str = (party.get("caller") or "").strip().strip('"').strip()  # pyVoIP left a quote
        # a call to a team number: which, and when the caller started waiting (the team registrar says so)
        team = team_routing(voip_call.request.headers) if direction == "inbound" else ("", None)
        self.team_number: str = team[0]
        self.team_arrived_at: datetime | None = team[1]
        self._media: CallMedia | None = None

    # ------------------------------------------------------------------------------------------------ state

    @property
    def ringing(self) -> bool:
        return self._call.state == CallState.RINGING

    @property
    def answered(self) -> bool:
        return self._call.state == CallState.ANSWERED

    @property
    def ended(self) -> threading.Event:
        return self._call.ended

    @property
    def answered_elsewhere(self) -> bool:
        """It stopped ringing because another phone the call was forked to answered it: not a caller who gave
        up. Said by the registrar's CANCEL (``Reason: SIP;cause=200``, RFC 3326; the team registrar passes no
        caller's Reason on)."""
        return cancelled_as_answered_elsewhere(self._call.cancel_reason)

    @property
    def not_connected(self) -> bool:
        """Answered, but the caller's ACK never came (the 200 OK did not reach it): ended, never connected."""
        return bool(getattr(self._call, "not_connected", False))  # only the adapter's calls know

    @property
    def hung_up_by(self) -> str | None:
        """``customer``, ``agent``, ``system`` or ``transfer`` (the agent handed the caller on) once it ended."""
        return self._call.hung_up_by

    @property
    def transferred_to(self) -> str | None:
        """The extension a completed blind transfer handed the caller to (None: not transferred)."""
        return self._call.transferred_to

    # ------------------------------------------------------------------------------------------- signalling

    def answer(self) -> None:
        self._call.answer()

    def reject(self, code: int = 486, phrase: str = "Busy Here") -> None:
        self._call.deny(code, phrase)

    def hangup(self) -> None:
        if self._call.state == CallState.ANSWERED:
            self._call.hangup()

    def transfer(self, target: str, timeout: float = 10.0) -> TransferResult:
        """Blind transfer (REFER) to extension ``target`` at our registrar; blocks until the outcome, at most
        ``timeout`` seconds. On success the far end is talking to ``target`` and this call has ended
        (``hung_up_by == "transfer"``); on any failure the call stays up as it was. ValueError for a target
        that is not a plain extension (nothing is sent)."""
        extension = transfer_target(target)
        try:
            referral = self._call.transfer(extension, timeout)
        except InvalidStateError as exc:
            return TransferResult(False, None, str(exc))
        return TransferResult(referral.ok, referral.status, referral.reason)

    def send_dtmf(self, digits: str) -> float:
        """Send ``digits`` (0-9 * # A-D) to the far end as RFC 4733 telephone-events, after any still being
        sent; returns at once with the seconds until the last is out (about 0.18 s a digit).

        ValueError for other characters (nothing is sent); :class:`DTMFUnavailable` if the far end did not
        offer telephone-event (no in-band tones are sent instead); :data:`CallNotAnswered` if not answered."""
        return self._call.send_dtmf(check_dtmf(digits))

    # ------------------------------------------------------------------------------------------------ audio

    def play(self, pcm16_8k: bytes) -> None:
        """Queue line audio to the customer (it plays in real time after what is queued)."""
        self._call.write_audio(pcm16_8k)

    def playing_seconds(self) -> float:
        clients = self._call.media_streams
        return clients[0].pending_send_seconds() if clients else 0.0

    def stop_playing(self) -> None:
        """Drop what is still queued for the customer (a key pressed during an IVR prompt: barge-in)."""
        for client in self._call.media_streams:
            client.clear_send()

    def read_dtmf(self) -> str:
        """Digits pressed since the last call ("" if none)."""
        return self._call.get_dtmf(length=32)

    def send_live(self, source: Callable[[], bytes] | None) -> None:
        """``source()`` is asked for 20 ms of line audio every time a packet goes to the customer and mixed
        with the queued prompts: the agent's microphone. None stops it."""
        for client in self._call.media_streams:
            client.live_source = source

    def attach_media(self, media: CallMedia) -> None:
        """From now on the RTP threads push both legs and every DTMF digit into ``media``."""
        self._media = media
        self._call.on_dtmf = media.key_pressed
        for index, client in enumerate(self._call.media_streams):
            client.on_sent = media.agent_frame if index == 0 else None
            client.on_received = media.customer_frame if index == 0 else None

    def detach_media(self) -> None:
        """The call is over: the customer's last frames still in the jitter buffer go to the media too."""
        self._call.on_dtmf = None
        for client in self._call.media_streams:
            client.on_sent = None
            client.push_received(flush=True)
            client.on_received = None
        self._media = None

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.sip_call_id}>"


@dataclass(frozen=True)
class DialResult:
    """How a placed call went: answered (with the call), busy, no_answer or failed, and the SIP reason."""

    outcome: str
    reason: str
    call: Call | None = None
