"""The door of the desk's SIP socket: every datagram is checked here before pyVoIP parses it (issue 19, item 3).

pyVoIP 1.6.8 drops valid requests it cannot parse, accepts malformed ones, answers neither with an error and
raises on some (docs/sip_base_evaluation.md §1). Here each datagram gets exactly one of:

* **deliver**: a request, or a response to one of our calls, for pyVoIP to parse, rewritten into the plain form its
  parser handles: folded lines unfolded, one Via per line with ``received``/``rport`` added to the top one
  (RFC 3261 §18.2.1, RFC 3581), the body cut at Content-Length (§18.3, so trailing octets are ignored);
* **reply**: our own answer instead, the one RFC 3261 §8.2 names for a UA: 400 with a reason phrase naming the
  fault, 505, 501 or 405 with Allow, 416, 420 with Unsupported, 415 with Accept, 406, 488 with a Warning, 481;
  addressed by the top Via with ``received``/``rport`` (§18.2.2, RFC 3581), which always means the source's IP
  address, so no name is ever looked up on the receive thread;
* **nothing**: a response that matches none of our calls (absorbed), an ACK we cannot use (ACKs get no answer), or
  input that is not SIP at all: counted, and logged once per source address per minute with its first bytes.

Nothing raises out of :meth:`SipScreen.screen`: a failure inside the checks counts as unparseable input.

Written here rather than taken from a library because there is no maintained SIP parser for Python: pyVoIP's is
the one being guarded, rfcvoip was measured and not taken (the evaluation), and the ``abnf`` package has no RFC 3261
grammar. The checks follow RFC 3261 §25's productions, named as there; a scanner walks each header value so that
every check is linear in the input (one large regular expression could backtrack for ever on hostile input).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
DEFAULT_PORT = 5060
MAX_CSEQ = 2**32 - 1  # RFC 3261 §8.1.1.5: a 32-bit unsigned integer
LOG_INTERVAL = 60.0  # seconds between two log lines about one source address
LOG_SOURCES = 4096  # addresses remembered for that; older ones are forgotten first
FIRST_BYTES = 64  # of a faulty datagram, in its log line

SUPPORTED_SCHEMES = frozenset({"sip"})  # sips needs TLS, which the desk does not offer yet (issue 19, item 4)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # option tags a Require may name (RFC 3261 §8.2.2.3)
OFFER_TYPE = "application/sdp"
AUDIO_CODECS = frozenset({"PCMU", "PCMA"})  # what the desk's media streams send and receive
STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}  # RFC 3551
WARN_AGENT = "contactcenter"  # the warn-agent pseudonym of our Warning headers (RFC 3261 §20.43)

COMPACT_FORMS = {  # RFC 3261 §7.3.3 and the extensions that define one
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "y": "identity",
}
CANONICAL_NAMES = {
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
        "Content-Encoding",
        "Supported",
        "Subject",
        "Event",
        "Refer-To",
        "Referred-By",
        "Allow-Events",
        "Session-Expires",
        "Identity",
        "Max-Forwards",
        "Record-Route",
        "Route",
        "Require",
        "Proxy-Require",
        "Accept",
        "Date",
        "Expires",
    )
}
SINGLE_HEADERS = ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type")  # not lists
REQUIRED_HEADERS = ("via", "from", "to", "call-id", "cseq")  # without them no response can be matched (§8.1.1)

# RFC 3261 §25.1 character classes (inside [...])
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_WORD = r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+"""
CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+")
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})"
_URI_PARAMETERS = re.compile(rf"(?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*")
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"
_URI_HEADERS = re.compile(rf"\?{_HNV}+={_HNV}*(?:&{_HNV}+={_HNV}*)*")
_URIC = re.compile(rf"(?:[;/?:@&=+$,{_UNRESERVED}]|{_ESCAPED})+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")
# a display-name word: a token, and, tolerated, UTF-8 (some phones send a Chinese name unquoted; RFC 3261 wants quotes)
_DISPLAY_WORD = re.compile(r"(?:[A-Za-z0-9\-.!%*_+`'~]|[^\x00-\x7f])+")
_ADDR_SPEC = re.compile(r"[^\s;,]+")  # an addr-spec outside <> ends at its first parameter or list comma
_GEN_VALUE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.!%*_+`'~]+")
_DIGITS = re.compile(r"[0-9]+")
_CSEQ = re.compile(r"([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)")
_SIP_VERSION = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9]{2})(?: .*)?", re.IGNORECASE | re.DOTALL)
_REQUEST_LIKE = re.compile(r"[ \t]SIP/\S*[ \t]*", re.IGNORECASE)  # how a request line ends, even a malformed one
_RFC1123_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_LOOSE_VIA = re.compile(  # enough of a broken Via to find where its sender listens
    r"\s*SIP\s*/\s*[^/\s]+\s*/\s*[^\s;,]+\s+(\[[^\]]*\]|[^\s;:,]+)(?:\s*:\s*([0-9]{1,5}))?", re.IGNORECASE
)
_LOOSE_RPORT = re.compile(r";\s*rport\s*(?:[;,=]|$)", re.IGNORECASE)
_LOOSE_TAG = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_SDP_LINE = re.compile(r"([a-z])=(.*)")
_SDP_CONNECTION = re.compile(r"IN IP[46] [^ /]+(?:/[0-9]+){0,2}")
_SDP_MEDIA = re.compile(r"([A-Za-z]+) ([0-9]+)(?:/[0-9]+)? (\S+)((?: \S+)+)")
_SDP_RTPMAP = re.compile(r"rtpmap:([0-9]+) ([^/\s]+)/[0-9]+")


class Rejection(Exception):
    """A request the UA answers itself, with ``code``, ``phrase`` and ``extra`` header lines."""

    def __init__(self, code: int, phrase: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code} {phrase}")
        self.code, self.phrase, self.extra = code, phrase, list(extra)


def _fault(phrase: str) -> NoReturn:
    raise Rejection(400, phrase)


# ------------------------------------------------------------------------------------------------ grammar


def valid_host(host: str) -> bool:
    """RFC 3261 host: a hostname (whose last label starts with a letter), an IPv4 address or [IPv6]."""
    if host.startswith("["):
        return host.endswith("]") and _is_ip(host[1:-1], 6)
    if re.fullmatch(r"[0-9.]+", host):
        return _is_ip(host, 4)
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and labels[-1][0].isalpha()


def _is_ip(text: str, version: int) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == version


def _same_address(host: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(ip)
    except ValueError:
        return False


@dataclass(frozen=True)
class Uri:
    """A URI in a request line or a header: its scheme (lower case), and for SIP URIs its parts."""

    scheme: str
    user: str | None = None
    host: str | None = None
    port: int | None = None
    headers: str = ""  # "?name=value&...", escaped as written


def parse_uri(text: str, fault: str) -> Uri:
    """A SIP-URI or SIPS-URI checked part by part, any other scheme as an absoluteURI (RFC 3261 §19.1.1, §25.1)."""
    match = _SCHEME.match(text)
    if match is None or text[match.end() : match.end() + 1] != ":":
        _fault(fault)
    scheme, rest = match.group().lower(), text[match.end() + 1 :]
    if scheme not in ("sip", "sips"):
        if not _URIC.fullmatch(rest):
            _fault(fault)
        return Uri(scheme)
    user = None
    at = rest.rfind("@")  # "@" stands nowhere else in a SIP URI unescaped
    if at >= 0:
        name, colon, password = rest[:at].partition(":")
        if not _USER.fullmatch(name) or (colon and not _PASSWORD.fullmatch(password)):
            _fault(fault)
        user, rest = name, rest[at + 1 :]
    host_match = _HOST.match(rest)
    if host_match is None or not valid_host(host_match.group()):
        _fault(fault)
    position, port = host_match.end(), None
    if rest[position : position + 1] == ":":
        port_match = _DIGITS.match(rest, position + 1)
        if port_match is None or int(port_match.group()) > 65535:
            _fault(fault)
        position, port = port_match.end(), int(port_match.group())
    params = _URI_PARAMETERS.match(rest, position)
    position = params.end() if params else position
    headers = rest[position:]
    if headers and not _URI_HEADERS.fullmatch(headers):
        _fault(fault)
    return Uri(scheme, user, host_match.group(), port, headers)


class _Scanner:
    """A cursor over one header value, for RFC 3261's productions with their optional whitespace (SWS): every
    failure is a 400 with ``fault`` as its reason phrase."""

    def __init__(self, text: str, fault: str) -> None:
        self.text, self.pos, self.fault = text, 0, fault

    def fail(self) -> NoReturn:
        _fault(self.fault)

    def sws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def at_end(self) -> bool:
        self.sws()
        return self.pos >= len(self.text)

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.pos)
        if match is None or not match.group():
            return None
        self.pos = match.end()
        return match.group()

    def need(self, pattern: re.Pattern[str]) -> str:
        value = self.take(pattern)
        if value is None:
            self.fail()
        return value

    def separator(self, char: str) -> None:
        """SLASH, EQUAL, COLON, SEMI, COMMA: SWS char SWS."""
        self.sws()
        if self.peek() != char:
            self.fail()
        self.pos += 1
        self.sws()

    def quoted(self) -> str:
        """A quoted-string, quotes included: qdtext (no control characters) and quoted-pairs."""
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return self.text[start : self.pos]
            if char == "\\":
                pair = self.text[self.pos + 1 : self.pos + 2]
                if not pair or pair in "\r\n" or ord(pair) > 0x7F:
                    self.fail()
                self.pos += 2
                continue
            if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
                self.fail()
            self.pos += 1
        self.fail()  # unterminated

    def params(self) -> list[tuple[str, str | None, int, int]]:
        """*( SEMI generic-param ), each with where it starts (its SWS and ";") and ends in the value."""
        found: list[tuple[str, str | None, int, int]] = []
        while True:
            start = self.pos
            self.sws()
            if self.peek() != ";":
                self.pos = start
                return found
            self.pos += 1
            self.sws()
            name = self.need(TOKEN)
            mark = self.pos
            self.sws()
            value: str | None = None
            if self.peek() == "=":
                self.pos += 1
                self.sws()
                value = self.quoted() if self.peek() == '"' else self.need(_GEN_VALUE)
            else:
                self.pos = mark
            found.append((name, value, start, self.pos))

    def list_separator(self) -> bool:
        """After one element of a comma-separated list: True if another follows, False at the end."""
        if self.at_end():
            return False
        if self.peek() != ",":
            self.fail()
        self.pos += 1
        return True


@dataclass(frozen=True)
class Via:
    """One via-parm (RFC 3261 §20.42): where its sender listens, and its parameters in order."""

    protocol: str  # "SIP/2.0/UDP", without the whitespace the header may have around the slashes
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...]

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key.lower() == name), None)

    def has(self, name: str) -> bool:
        return any(key.lower() == name for key, _ in self.params)

    def text(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        params = "".join(f";{key}" if value is None else f";{key}={value}" for key, value in self.params)
        return f"{self.protocol} {self.host}{port}{params}"

    def stamped(self, source: tuple[str, int]) -> Via:
        """As a server transport receives it (RFC 3261 §18.2.1, RFC 3581 §4): ``received`` when the sent-by is not
        the source address (a name, or another IP) or rport was asked for, and rport filled in."""
        ip, port = source
        rport = self.has("rport")
        params = [
            (key, str(port) if key.lower() == "rport" else value)
            for key, value in self.params
            if key.lower() != "received"
        ]
        if rport or not _same_address(self.host, ip):
            params.append(("received", ip))
        return Via(self.protocol, self.host, self.port, tuple(params))

    def reply_address(self) -> tuple[str, int]:
        """Where a response goes over UDP (RFC 3261 §18.2.2, RFC 3581 §4), once stamped: never a name to look up."""
        host = self.param("received") or self.host
        rport = self.param("rport")
        return host, int(rport) if rport else self.port or DEFAULT_PORT


def parse_vias(value: str) -> list[Via]:
    """A Via header's value: one via-parm or several, comma-separated."""
    scanner, vias = _Scanner(value, "Malformed Via Header"), []
    while True:
        scanner.sws()
        name = scanner.need(TOKEN)
        scanner.separator("/")
        version = scanner.need(TOKEN)
        scanner.separator("/")
        transport = scanner.need(TOKEN)
        if scanner.peek() not in (" ", "\t"):
            scanner.fail()
        scanner.sws()
        host = scanner.need(_HOST)
        if not valid_host(host):
            scanner.fail()
        port = None
        mark = scanner.pos
        scanner.sws()
        if scanner.peek() == ":":
            scanner.pos += 1
            scanner.sws()
            port = int(scanner.need(_DIGITS))
            if port > 65535:
                scanner.fail()
        else:
            scanner.pos = mark
        params = tuple((key, param) for key, param, _, _ in scanner.params())
        via = Via(f"{name}/{version}/{transport}", host, port, params)
        received, rport, ttl = via.param("received"), via.param("rport"), via.param("ttl")
        if (
            (via.has("received") and (received is None or not (_is_ip(received, 4) or _is_ip(received, 6))))
            or (rport is not None and not (rport.isdigit() and int(rport) <= 65535))
            or (via.has("ttl") and not (ttl is not None and ttl.isdigit() and int(ttl) <= 255))
            or (via.has("branch") and via.param("branch") is None)
        ):
            scanner.fail()
        vias.append(via)
        if not scanner.list_separator():
            return vias


@dataclass(frozen=True)
class Address:
    """A name-addr or addr-spec with its header parameters (From, To, Contact, Route, Record-Route)."""

    display: str  # as written: "" if none, a quoted-string with its quotes, or tokens
    uri_text: str
    uri: Uri
    params: tuple[tuple[str, str | None], ...]
    text: str  # the element as written
    without_tag: str  # the same without its tag parameter

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key.lower() == name), None)

    @property
    def tag(self) -> str:
        return self.param("tag") or ""

    @property
    def display_name(self) -> str:
        """The display name as text: unquoted, quoted-pairs resolved."""
        if self.display.startswith('"'):
            return re.sub(r"\\(.)", r"\1", self.display[1:-1], flags=re.DOTALL)
        return self.display


def parse_addresses(
    value: str, fault: str, *, many: bool = False, star: bool = False, bracketed: bool = False
) -> list[Address]:
    """``(name-addr / addr-spec) *(SEMI param)``, one or (``many``) a comma-separated list; Contact's ``*`` alone
    if ``star`` (an empty list); only name-addr if ``bracketed`` (Route, Record-Route)."""
    scanner, found = _Scanner(value, fault), []
    scanner.sws()
    if star and scanner.peek() == "*":
        scanner.pos += 1
        if not scanner.at_end():
            scanner.fail()
        return []
    while True:
        scanner.sws()
        start, display = scanner.pos, ""
        if scanner.peek() == '"':
            display = scanner.quoted()
            scanner.sws()
            if scanner.peek() != "<":
                scanner.fail()
        elif scanner.peek() != "<":
            words = []
            while (word := scanner.take(_DISPLAY_WORD)) is not None:
                words.append(word)
                scanner.sws()
            if words and scanner.peek() == "<":
                display = " ".join(words)
            else:
                scanner.pos = start
        if scanner.peek() == "<":
            end = scanner.text.find(">", scanner.pos)
            uri_text = scanner.text[scanner.pos + 1 : end] if end > 0 else ""
            if not uri_text or re.search(r"[\s<]", uri_text):  # LAQUOT addr-spec RAQUOT: no whitespace inside
                scanner.fail()
            scanner.pos = end + 1
        else:
            uri_text = scanner.take(_ADDR_SPEC) or ""
            # RFC 3261 §20.10: a URI with a comma, semicolon or question mark must be enclosed in <>
            if bracketed or not uri_text or "?" in uri_text:
                scanner.fail()
        uri = parse_uri(uri_text, fault)
        params = scanner.params()
        text = scanner.text[start : scanner.pos]
        without_tag = text
        for key, _, param_start, param_end in params:
            if key.lower() == "tag":
                without_tag = scanner.text[start:param_start] + scanner.text[param_end : scanner.pos]
        found.append(
            Address(
                display, uri_text, uri, tuple((key, param) for key, param, _, _ in params), text, without_tag.strip()
            )
        )
        if not scanner.list_separator():
            return found
        if not many:
            scanner.fail()


def parse_media_types(value: str, fault: str, *, many: bool) -> list[str]:
    """``type/subtype *(SEMI param)`` (Content-Type) or a list of them (Accept, possibly empty): the types, lower case."""
    scanner, found = _Scanner(value, fault), list[str]()
    if many and scanner.at_end():
        return found
    while True:
        scanner.sws()
        kind = scanner.need(TOKEN)
        scanner.separator("/")
        subtype = scanner.need(TOKEN)
        scanner.params()
        found.append(f"{kind}/{subtype}".lower())
        if not scanner.list_separator():
            return found
        if not many:
            scanner.fail()


def parse_tokens(value: str, fault: str) -> list[str]:
    """A comma-separated list of tokens (Require, Proxy-Require, Content-Encoding), possibly empty."""
    scanner, found = _Scanner(value, fault), list[str]()
    if scanner.at_end():
        return found
    while True:
        scanner.sws()
        found.append(scanner.need(TOKEN))
        if not scanner.list_separator():
            return found


# ------------------------------------------------------------------------------------------------ messages


@dataclass
class Datagram:
    """One datagram split into its start line, header fields (unfolded) and body, before any check."""

    start: str
    headers: list[tuple[str, str, str]]  # (key: long name in lower case, name as written, value)
    body: bytes
    fault: str | None  # the first header line that is not ``name: value``

    def values(self, key: str) -> list[str]:
        return [value for name, _, value in self.headers if name == key]

    def first(self, key: str) -> str | None:
        return next((value for name, _, value in self.headers if name == key), None)


def split_datagram(raw: bytes) -> Datagram:
    """Start line, header fields and body (RFC 3261 §7). Tolerant: CRLFs before the start line are skipped (§7.5),
    bare LF line ends are taken as CRLF, a datagram that ends without the empty line has no body."""
    data = raw.lstrip(b"\r\n")
    boundary = re.search(rb"\r?\n\r?\n", data)
    head, body = (data[: boundary.start()], data[boundary.end() :]) if boundary else (data.rstrip(b"\r\n"), b"")
    lines = re.split(r"\r?\n", head.decode("latin-1"))  # latin-1: one character per octet, so nothing is lost
    headers: list[tuple[str, str, str]] = []
    fault = None
    folded: list[list[str]] = []  # each field's lines
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and folded:
            folded[-1].append(line.strip(" \t"))
        elif line[:1] in (" ", "\t"):
            fault = fault or "Malformed Header Line"
        else:
            folded.append([line])
    for parts in folded:
        line = " ".join(part for part in parts if part)
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not TOKEN.fullmatch(name) or "\r" in line or "\n" in line:
            fault = fault or "Malformed Header Line"
            continue
        key = COMPACT_FORMS.get(name.lower(), name.lower())
        headers.append((key, name, value.strip(" \t")))
    return Datagram(lines[0], headers, body, fault)


@dataclass(frozen=True)
class Verdict:
    """What to do with one datagram: hand ``deliver`` to pyVoIP, or send ``reply`` to ``reply_to``, or neither
    (absorbed or dropped, counted and logged already). ``request`` keeps what a late answer (500) needs."""

    deliver: bytes | None = None
    reply: bytes | None = None
    reply_to: tuple[str, int] | None = None
    request: Datagram | None = None
    source: tuple[str, int] | None = None


class SourceLog:
    """Logs about faulty input, at most one line per source address per ``interval`` (the rest are counted and
    reported with the next line), so that a flood of garbage costs a line a minute, not a traceback a datagram."""

    def __init__(self, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._sources: dict[str, tuple[float, int]] = {}  # address → (last logged at, held back since)
        self._lock = threading.Lock()

    def emit(self, level: int, source: tuple[str, int], what: str, raw: bytes) -> bool:
        """Log ``what`` about a datagram from ``source`` unless this address was logged within the interval;
        whether it was."""
        now = self.clock()
        with self._lock:
            last = self._sources.get(source[0])
            if last is not None and now - last[0] < self.interval:
                self._sources[source[0]] = (last[0], last[1] + 1)
                held_back = -1
            else:
                held_back = last[1] if last is not None else 0
                self._sources.pop(source[0], None)
                self._sources[source[0]] = (now, 0)
                while len(self._sources) > LOG_SOURCES:
                    del self._sources[next(iter(self._sources))]  # the least recently logged address
        if held_back < 0:
            log.debug("SIP from %s:%s: %s", source[0], source[1], what)
            return False
        more = f"; {held_back} more from this address since the last report" if held_back else ""
        log.log(
            level,
            "SIP from %s:%s: %s; first bytes %r%s (one line per address per %g s)",
            source[0],
            source[1],
            what,
            raw[:FIRST_BYTES],
            more,
            self.interval,
        )
        return True


class SipScreen:
    """Checks every datagram of one SIP socket (the module docstring says what it decides and why).

    ``allowed`` are the methods the UA handles (the rest of ``known`` get 405, any other 501), ``agent`` goes in
    the Server header of our answers, ``call_exists`` says whether a Call-ID is one of our calls (requests with a
    To-tag outside one get 481, responses outside one are absorbed)."""

    def __init__(
        self,
        *,
        allowed: Iterable[str],
        known: Iterable[str],
        agent: str,
        call_exists: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
        media_profiles: Iterable[str] = ("RTP/AVP",),
    ) -> None:
        self.allowed = list(allowed)
        self.media_profiles = tuple(media_profiles)  # the SDP transport profiles an offer's audio may use
        self.known = set(known) | set(self.allowed)
        self.agent = agent
        self.call_exists = call_exists
        self.counts: Counter[str] = Counter()
        self.faults = SourceLog(clock=clock)

    # -------------------------------------------------------------------------------------------- the door

    def screen(self, raw: bytes, source: tuple[str, int]) -> Verdict:
        """The verdict on one datagram from ``source``; never raises."""
        try:
            return self._screen(raw, source)
        except Exception as exc:  # a mistake in the checks must cost one datagram, not the SIP thread
            self.counts["checks failed"] += 1
            self._drop("unparseable", source, raw, f"not checked ({type(exc).__name__}: {exc})")
            return Verdict()

    def _screen(self, raw: bytes, source: tuple[str, int]) -> Verdict:
        if raw.strip(b"\x00\r\n \t") == b"":
            self.counts["keep-alive"] += 1
            return Verdict()
        datagram = split_datagram(raw)
        if datagram.start[:4].upper() == "SIP/":
            return self._response(datagram, source, raw)
        if _REQUEST_LIKE.search(datagram.start) and datagram.start[:1] not in (" ", "\t", ""):
            return self._request(datagram, source, raw)
        self._drop("unparseable", source, raw, "not a SIP request or response")
        return Verdict()

    def answer(self, verdict: Verdict, code: int, phrase: str) -> tuple[bytes, tuple[str, int]] | None:
        """Our own answer to a delivered request (a 500 when pyVoIP fails on what was let through); None for an
        ACK or a response."""
        request, source = verdict.request, verdict.source
        if request is None or source is None or request.start.split(" ", 1)[0] == "ACK":
            return None
        self.counts[f"sent {code}"] += 1
        return self._reply(request, source, code, phrase, [])

    # ------------------------------------------------------------------------------------------- responses

    def _response(self, datagram: Datagram, source: tuple[str, int], raw: bytes) -> Verdict:
        why = self._response_fault(datagram)
        if why is not None:
            self._drop("malformed response", source, raw, f"malformed response dropped ({why})")
            return Verdict()
        call_id = datagram.first("call-id") or ""
        vias = [via for value in datagram.values("via") for via in parse_vias(value)]
        if len(vias) != 1 or not self.call_exists(call_id):  # RFC 3261 §8.1.3.3: more than one Via, discard
            self.counts["stray response"] += 1
            log.debug("SIP response from %s:%s matches no call, absorbed: %s", *source, datagram.start[:80])
            return Verdict()
        self.counts["delivered response"] += 1
        return Verdict(deliver=self._plain(datagram, datagram.start, vias, self._body(datagram)))

    @staticmethod
    def _response_fault(datagram: Datagram) -> str | None:
        if not _STATUS_LINE.fullmatch(datagram.start):
            return "status line"
        if datagram.fault:
            return datagram.fault
        try:
            for key in REQUIRED_HEADERS:
                if not datagram.values(key):
                    return f"no {CANONICAL_NAMES[key]}"
            for key in SINGLE_HEADERS:
                if len(datagram.values(key)) > 1:
                    return f"several {CANONICAL_NAMES[key]}"
            for value in datagram.values("via"):
                parse_vias(value)
            parse_addresses(datagram.first("from") or "", "From")
            parse_addresses(datagram.first("to") or "", "To")
            _check_cseq(datagram.first("cseq") or "")
            _check_content_length(datagram)
            for value in datagram.values("content-type"):
                parse_media_types(value, "Content-Type", many=False)
            if SipScreen._body(datagram) and not datagram.values("content-type"):
                return "a body without Content-Type"
        except Rejection as rejection:
            return rejection.phrase
        return None

    # -------------------------------------------------------------------------------------------- requests

    def _request(self, datagram: Datagram, source: tuple[str, int], raw: bytes) -> Verdict:
        method = datagram.start.split(" ", 1)[0]
        try:
            vias = self._check_request(datagram, method)
        except Rejection as rejection:
            if method == "ACK":  # never answered (RFC 3261 §17.2.3); an ACK we cannot use is dropped
                self._drop("dropped ACK", source, raw, f"ACK dropped ({rejection.code} {rejection.phrase})")
                return Verdict()
            return self._rejected(datagram, source, raw, rejection)
        call_id = datagram.first("call-id") or ""
        to_tag = parse_addresses(datagram.first("to") or "", "Malformed To Header")[0].tag
        if to_tag and not self.call_exists(call_id):  # RFC 3261 §12.2.2: a dialog we do not have
            if method == "ACK":
                self.counts["dropped ACK"] += 1  # the ACK of a call that has ended: nothing to do
                return Verdict()
            return self._rejected(datagram, source, raw, Rejection(481, "Call/Transaction Does Not Exist"))
        self.counts["delivered request"] += 1
        vias[0] = vias[0].stamped(source)
        _, uri, _ = datagram.start.split(" ")
        plain = self._plain(datagram, f"{method} {uri} SIP/2.0", vias, self._body(datagram))
        return Verdict(deliver=plain, request=datagram, source=source)

    def _check_request(self, datagram: Datagram, method: str) -> list[Via]:
        """Every check, in RFC 3261 §8.2's order after the syntax; the Vias if it passes, else Rejection."""
        parts = datagram.start.split(" ")
        if len(parts) != 3 or "" in parts or "\t" in datagram.start:
            _fault("Extra Whitespace in Request-Line" if len(datagram.start.split()) == 3 else "Malformed Request-Line")
        uri_text, version = parts[1], _SIP_VERSION.fullmatch(parts[2])
        if not TOKEN.fullmatch(method):
            _fault("Malformed Method")
        if version is None:
            _fault("Malformed SIP-Version")
        if (int(version.group(1)), int(version.group(2))) != (2, 0):
            raise Rejection(505, "Version Not Supported")
        if datagram.fault:
            _fault(datagram.fault)
        missing = [CANONICAL_NAMES[key] for key in REQUIRED_HEADERS if not datagram.values(key)]
        if missing:
            _fault(f"Missing {', '.join(missing)} Header{'s' if len(missing) > 1 else ''}")
        repeated = [CANONICAL_NAMES[key] for key in SINGLE_HEADERS if len(datagram.values(key)) > 1]
        if repeated:
            _fault(f"Multiple {', '.join(repeated)} Headers")
        vias = [via for value in datagram.values("via") for via in parse_vias(value)]
        parse_addresses(datagram.first("from") or "", "Malformed From Header")
        parse_addresses(datagram.first("to") or "", "Malformed To Header")
        if not CALL_ID.fullmatch(datagram.first("call-id") or ""):
            _fault("Malformed Call-ID Header")
        _, cseq_method = _check_cseq(datagram.first("cseq") or "")
        for value in datagram.values("max-forwards"):  # over 255 is taken as if absent (RFC 4475 §3.1.2.4)
            if not _DIGITS.fullmatch(value):
                _fault("Malformed Max-Forwards Header")
        _check_content_length(datagram)
        for value in datagram.values("contact"):
            parse_addresses(value, "Malformed Contact Header", many=True, star=method == "REGISTER")
        for key, name in (("route", "Route"), ("record-route", "Record-Route")):
            for value in datagram.values(key):
                parse_addresses(value, f"Malformed {name} Header", many=True, bracketed=True)
        content_types = [
            parse_media_types(value, "Malformed Content-Type Header", many=False)[0]
            for value in datagram.values("content-type")
        ]
        encodings = [
            token
            for value in datagram.values("content-encoding")
            for token in parse_tokens(value, "Malformed Content-Encoding Header")
        ]
        required = [
            token for value in datagram.values("require") for token in parse_tokens(value, "Malformed Require Header")
        ]
        for value in datagram.values("proxy-require"):  # a UA ignores it (RFC 3261 §20.29), but it must parse
            parse_tokens(value, "Malformed Proxy-Require Header")
        accepted = [
            kind
            for value in datagram.values("accept")
            for kind in parse_media_types(value, "Malformed Accept Header", many=True)
        ]
        for value in datagram.values("date"):
            if not _RFC1123_DATE.fullmatch(value):
                _fault("Malformed Date Header")
        for value in datagram.values("expires"):  # an overlarge value is taken as the longest (RFC 4475 §3.1.2.4)
            if not _DIGITS.fullmatch(value):
                _fault("Malformed Expires Header")
        uri = parse_uri(uri_text, "Malformed Request-URI")
        if uri.headers:  # RFC 3261 §19.1.1: headers are not allowed in a Request-URI
            _fault("Headers in Request-URI")

        # RFC 3261 §8.2.1 method, §8.2.2 headers (416, 420), §8.2.3 content (415), then the offer
        allow = [("Allow", ", ".join(self.allowed))]
        if method not in self.known:
            raise Rejection(501, "Not Implemented", allow)
        if method not in self.allowed:
            raise Rejection(405, "Method Not Allowed", allow)
        if cseq_method != method:
            _fault("CSeq Method Does Not Match Request")
        if uri.scheme not in SUPPORTED_SCHEMES:
            raise Rejection(416, "Unsupported URI Scheme")
        unsupported = [tag for tag in required if tag not in SUPPORTED_EXTENSIONS]
        if unsupported and method not in ("ACK", "CANCEL"):  # never rejected for a Require (§8.2.2.3)
            raise Rejection(420, "Bad Extension", [("Unsupported", ", ".join(unsupported))])
        body = self._body(datagram)
        if body and not content_types:
            _fault("Missing Content-Type Header")
        if body and any(encoding.lower() != "identity" for encoding in encodings):
            raise Rejection(415, "Unsupported Media Type", [("Accept-Encoding", "identity")])
        if method == "INVITE":
            self._check_offer(datagram, body, content_types, accepted)
        return vias

    def _check_offer(self, datagram: Datagram, body: bytes, content_types: list[str], accepted: list[str]) -> None:
        """An INVITE must carry an SDP offer the desk can take, and let us answer with SDP."""
        if body and content_types[0] != OFFER_TYPE:
            raise Rejection(415, "Unsupported Media Type", [("Accept", OFFER_TYPE)])
        if datagram.values("accept") and not any(
            kind in ("*/*", "application/*", OFFER_TYPE) for kind in accepted
        ):  # our 200 OK carries SDP: a caller that cannot take it gets 406 (RFC 4475 §3.3.15)
            raise Rejection(406, "Not Acceptable", [("Warning", f'399 {WARN_AGENT} "an answer is SDP"')])
        if body:
            check_offer(body, self.media_profiles)
        elif not _LOOSE_TAG.search(datagram.first("to") or ""):
            # an INVITE without an offer asks for ours in the 200 and the answer in the ACK, which pyVoIP cannot do
            raise Rejection(
                488, "Not Acceptable Here", [("Warning", f'399 {WARN_AGENT} "an SDP offer in the INVITE is required"')]
            )

    # ------------------------------------------------------------------------------------------- answering

    def _rejected(self, datagram: Datagram, source: tuple[str, int], raw: bytes, rejection: Rejection) -> Verdict:
        self.counts[f"sent {rejection.code}"] += 1
        method = datagram.start.split(" ", 1)[0][:32]
        what = f"{method} answered {rejection.code} {rejection.phrase}"
        if rejection.code in (400, 505):
            self.faults.emit(logging.WARNING, source, what, raw)
        elif rejection.code in (415, 416, 420, 406, 488):  # a call or request refused: worth knowing why
            self.faults.emit(logging.INFO, source, what, raw)
        else:
            log.debug("SIP from %s:%s: %s", *source, what)
        reply, address = self._reply(datagram, source, rejection.code, rejection.phrase, rejection.extra)
        return Verdict(reply=reply, reply_to=address)

    def _reply(
        self, datagram: Datagram, source: tuple[str, int], code: int, phrase: str, extra: list[tuple[str, str]]
    ) -> tuple[bytes, tuple[str, int]]:
        """A response built from the request's own header values (RFC 3261 §8.2.6.2), even a faulty request's,
        and where to send it."""
        lines = [f"SIP/2.0 {code} {phrase}"]
        destination = source
        for index, value in enumerate(datagram.values("via")):
            if index == 0:
                value, destination = _top_via_reply(value, source)
            lines.append(f"Via: {value}")
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
            for value in datagram.values(key)[:1]:
                if key == "to" and code > 100 and not _LOOSE_TAG.search(value):
                    value += f";tag={uuid.uuid4().hex[:16]}"  # §8.2.6.2: the UAS adds a To tag
                lines.append(f"{name}: {value}")
        lines += [f"{name}: {value}" for name, value in extra]
        lines += [f"Server: {self.agent}", "Content-Length: 0"]
        text = "\r\n".join(line.replace("\r", " ").replace("\n", " ") for line in lines) + "\r\n\r\n"
        return text.encode("latin-1", errors="replace"), destination

    def _drop(self, kind: str, source: tuple[str, int], raw: bytes, what: str) -> None:
        self.counts[kind] += 1
        self.faults.emit(logging.WARNING, source, what, raw)

    # ------------------------------------------------------------------------------------------ pyVoIP's form

    @staticmethod
    def _body(datagram: Datagram) -> bytes:
        """The body: Content-Length octets, or the rest of the datagram without one (RFC 3261 §18.3)."""
        length = datagram.first("content-length")
        return datagram.body[: int(length)] if length is not None and length.isdigit() else datagram.body

    @staticmethod
    def _plain(datagram: Datagram, start: str, vias: list[Via], body: bytes) -> bytes:
        """The message as pyVoIP's parser can take it: one field a line under its full name, one Via a line, the
        right Content-Length."""
        lines, vias_written = [start], False
        for key, name, value in datagram.headers:
            if key == "via":
                if not vias_written:
                    lines += [f"Via: {via.text()}" for via in vias]
                    vias_written = True
                continue
            if key == "content-length":
                continue
            if key == "cseq":
                value = " ".join(value.split())
            lines.append(f"{CANONICAL_NAMES.get(key, name)}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _top_via_reply(value: str, source: tuple[str, int]) -> tuple[str, tuple[str, int]]:
    """The top Via header of our answer (its first via-parm stamped) and where the answer goes. A Via too broken
    to parse is copied as it is, and the answer goes where its sent-by seems to say, or back to the source."""
    try:
        vias = parse_vias(value)
    except Rejection:
        loose = _LOOSE_VIA.match(value)
        if loose is None or _LOOSE_RPORT.search(value):
            return value, source
        return value, (source[0], int(loose.group(2) or DEFAULT_PORT))
    vias[0] = vias[0].stamped(source)
    return ", ".join(via.text() for via in vias), vias[0].reply_address()


def _check_cseq(value: str) -> tuple[int, str]:
    match = _CSEQ.fullmatch(value)
    if match is None:
        _fault("Malformed CSeq Header")
    if int(match.group(1)) > MAX_CSEQ:
        _fault("CSeq Number Out of Range")
    return int(match.group(1)), match.group(2)


def _check_content_length(datagram: Datagram) -> None:
    for value in datagram.values("content-length"):
        if value.startswith("-") and _DIGITS.fullmatch(value[1:]):
            _fault("Negative Content-Length")
        if not _DIGITS.fullmatch(value):
            _fault("Malformed Content-Length Header")
        if int(value) > len(datagram.body):
            _fault("Content-Length Larger Than Message")


def check_offer(body: bytes, profiles: Iterable[str] = ("RTP/AVP",)) -> None:
    """An SDP offer (RFC 4566) the desk can answer: well formed where pyVoIP reads it (400 if not), with an audio
    stream in one of ``profiles`` (RTP/AVP; RTP/SAVP too when the phone decides on SRTP itself) offering PCMU or
    PCMA (488 with the Warning RFC 3261 §20.43 names if not)."""
    media: list[tuple[str, int, str, list[str], dict[str, str]]] = []  # type, port, proto, formats, rtpmap names
    connection = False
    for line in re.split(r"\r?\n", body.decode("utf-8", errors="replace")):
        if not line:
            continue
        match = _SDP_LINE.fullmatch(line)
        if match is None:
            _fault("Malformed SDP")
        kind, value = match.groups()
        if kind == "c":
            if not _SDP_CONNECTION.fullmatch(value):
                _fault("Malformed SDP Connection Line")
            connection = True
        elif kind == "m":
            described = _SDP_MEDIA.fullmatch(value)
            if described is None:
                _fault("Malformed SDP Media Line")
            media.append(
                (described.group(1), int(described.group(2)), described.group(3), described.group(4).split(), {})
            )
        elif kind == "a" and media and (rtpmap := _SDP_RTPMAP.match(value)):
            media[-1][4][rtpmap.group(1)] = rtpmap.group(2).upper()
    if not connection:
        _fault("No Connection Address in SDP")
    audio = [stream for stream in media if stream[0] == "audio"]
    avp = [stream for stream in audio if stream[2] in profiles]
    for _, _, _, formats, _ in avp:
        if not all(fmt.isdigit() and int(fmt) <= 127 for fmt in formats):
            _fault("Malformed SDP Media Line")
    if not audio:
        raise Rejection(488, "Not Acceptable Here", [("Warning", f'304 {WARN_AGENT} "Media type not available"')])
    if not avp:
        raise Rejection(
            488, "Not Acceptable Here", [("Warning", f'302 {WARN_AGENT} "Incompatible transport protocol"')]
        )
    if not any(
        port != 0
        and any(STATIC_PAYLOAD_TYPES.get(int(fmt)) in AUDIO_CODECS or names.get(fmt) in AUDIO_CODECS for fmt in formats)
        for _, port, _, formats, names in avp
    ):
        raise Rejection(488, "Not Acceptable Here", [("Warning", f'305 {WARN_AGENT} "Incompatible media format"')])
