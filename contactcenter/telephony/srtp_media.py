"""SRTP call media with SDES keys (RFC 4568 ``a=crypto``, RFC 3711), the crypto done by libsrtp (pylibsrtp).

Why SDES: it is what PBXs and softphones (baresip's ``srtp`` module, Asterisk, FreeSWITCH) offer alongside
SIP over TLS, and it needs nothing but the SDP. Its keys travel in clear text inside the SDP, so they are
offered and accepted only over TLS: a call asking for SRTP over plain SIP is refused (488) with one log line.

Here: the ``a=crypto`` lines made for an offer or an answer and read from the peer's, the choice of suite
(AES_CM_128_HMAC_SHA1_80 first, _32 accepted), and :class:`SrtpSocket`, which wraps a call's UDP socket so
everything sent is protected and everything received is authenticated and decrypted; packets that fail
authentication are dropped and counted. No cryptography is written here: keys come from ``secrets`` and
every packet goes through libsrtp.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

# suites in order of preference: key and salt are 16 + 14 bytes for both (RFC 4568 §6.2)
SUITES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_SALT_BYTES = 30
SECURE_PROFILE = "RTP/SAVP"
PLAIN_PROFILE = "RTP/AVP"
_CRYPTO = re.compile(r"^a=crypto:(\S+)[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$")
_AUDIO_LINE = re.compile(r"^m=audio[ \t]+\d+[ \t]+(\S+)", re.M)


class SrtpRefused(Exception):
    """The call cannot have the media encryption asked for; the message is the one log line, ``status`` the SIP
    answer (488 Not Acceptable Here)."""

    status = 488
    phrase = "Not Acceptable Here"


@dataclass(frozen=True)
class CryptoAttribute:
    """One ``a=crypto:<tag> <suite> inline:<key||salt>`` line (RFC 4568 §9.1), with one key and no MKI."""

    tag: int
    suite: str
    key: bytes  # master key then master salt, 30 bytes

    @classmethod
    def new(cls, tag: int = 1, suite: str = "AES_CM_128_HMAC_SHA1_80") -> CryptoAttribute:
        """A fresh random master key and salt (from the OS's CSPRNG) for ``suite``."""
        return cls(tag, suite, secrets.token_bytes(KEY_SALT_BYTES))

    def line(self) -> str:
        return f"a=crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"

    @classmethod
    def parse(cls, line: str) -> CryptoAttribute | None:
        """The attribute, or None for a suite, key form or session parameter this desk does not support
        (unknown suites are skipped by the rules, RFC 4568 §7.1.1). Raises SrtpRefused for a malformed one."""
        match = _CRYPTO.match(line.strip())
        if match is None:
            raise SrtpRefused(f"malformed crypto attribute: {line.strip()[:60]!r}")
        tag_text, suite, key_params, session_params = match.groups()
        if not tag_text.isdigit() or len(tag_text) > 9:
            raise SrtpRefused(f"malformed crypto tag {tag_text[:12]!r}")
        if suite not in SUITES or session_params or ";" in key_params:  # UNENCRYPTED_SRTP etc., several keys
            return None
        if not key_params.startswith("inline:"):
            return None
        key_text, *extras = key_params[len("inline:") :].split("|")
        if any(":" in extra for extra in extras):  # an MKI: libsrtp could, the desk keeps one key per call
            return None
        try:
            key = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError):
            raise SrtpRefused(f"crypto attribute {tag_text}: the key is not base64") from None
        if len(key) != KEY_SALT_BYTES:
            raise SrtpRefused(f"crypto attribute {tag_text}: a key of {len(key)} bytes, {KEY_SALT_BYTES} expected")
        return cls(int(tag_text), suite, key)


def media_profile(sdp: str) -> str | None:
    """The transport profile of the first audio stream ("RTP/AVP", "RTP/SAVP", ...), or None without one."""
    match = _AUDIO_LINE.search(sdp)
    return match.group(1) if match else None


def crypto_attributes(sdp: str) -> list[CryptoAttribute]:
    """The peer's usable ``a=crypto`` lines, in its order of preference (the order it wrote them)."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=crypto:"):
            attribute = CryptoAttribute.parse(line)
            if attribute is not None:
                found.append(attribute)
    return found


def offer_attributes() -> list[CryptoAttribute]:
    """What the desk offers when it calls: each supported suite, each with its own fresh key."""
    return [CryptoAttribute.new(tag, suite) for tag, suite in enumerate(SUITES, start=1)]


def check_offer(sdp: str, *, encryption: str, signalling_secure: bool) -> CryptoAttribute | None:
    """Whether the desk can take a call offering ``sdp``: the peer's chosen crypto attribute for SRTP, None
    for plain RTP. SrtpRefused (its message the log line) when the offer and the settings disagree."""
    profile = media_profile(sdp)
    wants_srtp = profile is not None and "SAVP" in profile.upper()
    if wants_srtp and not signalling_secure:
        raise SrtpRefused(
            "refused: the caller asks for SRTP over plain SIP; its keys would be readable on the wire "
            '(set [sip] transport = "tls" and media_encryption = "srtp")'
        )
    if not wants_srtp:
        if encryption == "srtp":
            raise SrtpRefused(
                f'refused: the caller offers unencrypted media ({profile}) and [sip] media_encryption = "srtp"'
            )
        return None
    if encryption != "srtp":
        raise SrtpRefused(f'refused: the caller asks for SRTP ({profile}) and [sip] media_encryption = "none"')
    if profile and profile.upper() not in (SECURE_PROFILE, "RTP/SAVPF"):
        raise SrtpRefused(f"refused: media profile {profile} is not supported (DTLS-SRTP is not; SDES is)")
    offered = crypto_attributes(sdp)
    if not offered:
        raise SrtpRefused(f"refused: no a=crypto line with a supported suite ({', '.join(SUITES)})")
    return offered[0]


def answer_attribute(offered: CryptoAttribute) -> CryptoAttribute:
    """The desk's answer to the chosen offer: the same tag and suite, its own fresh key (RFC 4568 §7.1.2)."""
    return CryptoAttribute.new(offered.tag, offered.suite)


def accepted_attribute(sdp: str, offered: list[CryptoAttribute]) -> tuple[CryptoAttribute, CryptoAttribute]:
    """From the peer's answer to our offer: (our attribute it chose, its own). SrtpRefused if it chose none."""
    if "SAVP" not in (media_profile(sdp) or "").upper():
        raise SrtpRefused("the callee answered without SRTP; the call is ended")
    ours = {attribute.tag: attribute for attribute in offered}
    for answer in crypto_attributes(sdp):
        mine = ours.get(answer.tag)
        if mine is not None and mine.suite == answer.suite:
            return mine, answer
    raise SrtpRefused("the callee's answer matches none of the offered crypto attributes")


class SrtpSession:
    """Both directions of one call's media: ours protected with our key, the peer's checked with its key."""

    def __init__(self, local: CryptoAttribute, remote: CryptoAttribute) -> None:
        if local.suite != remote.suite:
            raise SrtpRefused(f"crypto suites differ: {local.suite} sent, {remote.suite} received")
        profile = SUITES[local.suite]
        self.suite = local.suite
        self._out = Session(Policy(key=local.key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self._in = Session(Policy(key=remote.key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        self._out_lock = threading.Lock()  # libsrtp sessions are not thread-safe; DTMF and voice share a stream
        self._in_lock = threading.Lock()
        self.protected = 0
        self.unprotected = 0
        self.rejected = 0  # failed authentication or replayed: dropped

    def protect(self, packet: bytes) -> bytes:
        with self._out_lock:
            protected = self._out.protect(packet)
        self.protected += 1
        return protected

    def unprotect(self, packet: bytes) -> bytes | None:
        """The plain RTP packet, or None for one that fails authentication or replays an old one."""
        try:
            with self._in_lock:
                plain = self._in.unprotect(packet)
        except LibSrtpError:
            self.rejected += 1
            return None
        self.unprotected += 1
        return plain


class SrtpSocket:
    """A call's UDP socket with SRTP on it: ``sendto`` protects, ``recv``/``recvfrom`` authenticate and
    decrypt. A packet that fails is dropped and the read reports nothing yet (BlockingIOError on a
    non-blocking socket, as pyVoIP's RTP loop expects, else the next packet). Everything else is the socket's."""

    def __init__(self, sock: socket.socket, session: SrtpSession) -> None:
        self._socket = sock
        self.session = session

    def sendto(self, data: bytes, address: Any) -> int:
        self._socket.sendto(self.session.protect(data), address)
        return len(data)

    def recvfrom(self, bufsize: int) -> tuple[bytes, Any]:
        while True:
            data, source = self._socket.recvfrom(bufsize + 16)  # room for the authentication tag
            plain = self.session.unprotect(data)
            if plain is not None:
                return plain, source
            if self._socket.gettimeout() == 0.0:
                raise BlockingIOError("an SRTP packet failed authentication and was dropped")

    def recv(self, bufsize: int) -> bytes:
        return self.recvfrom(bufsize)[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


def secure_sdp(sdp: str, attributes: list[CryptoAttribute]) -> str:
    """``sdp`` (the desk's plain offer or answer) made secure: the audio stream as RTP/SAVP with the
    ``a=crypto`` lines right after its m= line. The line ends (CRLF or LF) are kept."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    out: list[str] = []
    for line in lines:
        if line.startswith("m=audio"):
            out.append(re.sub(r"^(m=audio[ \t]+\d+[ \t]+)RTP/AVP\b", rf"\g<1>{SECURE_PROFILE}", line))
            out.extend(attribute.line() for attribute in attributes)
        else:
            out.append(line)
    return newline.join(out)


def with_body(message: str, body: str) -> str:
    """A SIP message (as pyVoIP writes it) with its body replaced and Content-Length set to match."""
    head, _, _ = message.partition("\r\n\r\n")
    length = len(body.encode("utf8"))
    head, count = re.subn(r"(?im)^(content-length|l)[ \t]*:[ \t]*\d+[ \t]*(?=\r?$)", f"Content-Length: {length}", head)
    if count == 0:
        head += f"\r\nContent-Length: {length}"
    return f"{head}\r\n\r\n{body}"


def sdp_of(message: str) -> str:
    """The body of a SIP message (the SDP of an INVITE or its answer)."""
    return message.partition("\r\n\r\n")[2]
