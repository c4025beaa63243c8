"""The desk's part in a team line: its contact for the team number, and its writes to the team call's row.

:class:`TeamMembership` keeps a contact for the team number registered at the registrar while the agent is
ready, and removes it when the agent leaves ready, so Kamailio forks team calls only to ready agents. It
sends its REGISTERs from a socket of its own (the contact is the desk's SIP address), so it never competes
with pyVoIP's registration for responses and never blocks signalling; a worker thread applies the latest
wish, refreshes it before it lapses and retries when the registrar does not answer. A desk that dies stops
refreshing: its team contact lapses within ``[team] registration_seconds``.

For ``longest_idle`` the contact carries a q-value that falls the later in the day the agent became idle,
so Kamailio's serial forking (by q) rings the longest idle agent first. q has three decimals (RFC 3261), so
agents who became idle within the same 86 s share a level and ring together; the scale restarts at local
midnight.

:class:`TeamLedger` writes the team call's row (:mod:`contactcenter.storage.team_calls`) on one worker thread,
in order. The only write a call waits for is the claim before answering, and for at most ``timeout``: a
slow or unreachable database makes the desk answer anyway (the caller comes first), it never drops the call.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, TypeVar

from contactcenter.storage import team_calls
from contactcenter.storage.database import Database
from contactcenter.telephony.agent_state import AgentState, AgentStatus
from contactcenter.telephony.call import Call

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")

log = logging.getLogger(__name__)
USER_AGENT = "contactcenter team line"


@dataclass(frozen=True)
class ContactAccount:
    """Where the registrar is, who the desk is (for digest authentication) and the desk's SIP address."""

    server: str
    port: int
    user: str
    password: str
    contact_host: str
    contact_port: int


def idle_q(idle_since: datetime, zone: tzinfo = UTC) -> float:
    """The q-value for an agent idle since ``idle_since``: 1.0 at the start of the day in ``zone`` (the
    desk's [general] timezone, so the wrap-around falls at local midnight, not in working hours), falling to
    0.001 at its end, so the earlier an agent became idle, the sooner serial forking rings them."""
    moment = idle_since.astimezone(zone)
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return round(max(0.001, 1.0 - seconds / 86400), 3)


def _digest(realm: str, nonce: str, user: str, password: str, uri: str, qop: str | None) -> str:
    """The Authorization header's value (RFC 2617 MD5 digest, with qop=auth when the registrar asks for it).
    Hand-written because pyVoIP's own helper is bound to its registration; it is these few lines."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"REGISTER:{uri}")
    value = f'Digest username="{user}",realm="{realm}",nonce="{nonce}",uri="{uri}",algorithm=MD5'
    if qop is not None and "auth" in qop.split(","):
        cnonce, count = uuid.uuid4().hex[:16], "00000001"
        response = md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        return value + f',response="{response}",qop=auth,nc={count},cnonce="{cnonce}"'
    return value + f',response="{md5(f"{ha1}:{nonce}:{ha2}")}"'


def _challenge(response: str) -> tuple[str, str, str | None] | None:
    header = re.search(r"^WWW-Authenticate:\s*Digest\s+(.*)$", response, re.IGNORECASE | re.MULTILINE)
    if header is None:
        return None
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    if "realm" not in fields or "nonce" not in fields:
        return None
    return fields["realm"], fields["nonce"], fields.get("qop")


class TeamMembership:
    """One extra contact of this desk, for ``aor`` (the team or overflow number), registered while wanted."""

    def __init__(self, account: ContactAccount, aor: str, expires: int, *, answer_timeout: float = 2.0) -> None:
        self.account = account
        self.aor = aor
        self.expires = expires
        self.answer_timeout = answer_timeout
        self._call_id = f"{uuid.uuid4().hex}@{account.contact_host}"
        self._tag = uuid.uuid4().hex[:10]
        self._cseq = 0
        self._wanted = False
        self._q: float | None = None
        self._registered = False
        self._dirty = False
        self._stopping = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self.on_change: Callable[[bool], None] | None = None  # registered or not, after each change

    @property
    def registered(self) -> bool:
        with self._condition:
            return self._registered

    def want(self, registered: bool, q: float | None = None) -> None:
        """Have the contact registered (with ``q``) or removed; applied at once by the worker."""
        with self._condition:
            if (registered, q) == (self._wanted, self._q) and not self._dirty:
                return
            self._wanted, self._q, self._dirty = registered, q, True
            self._condition.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"team contact {self.aor}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Remove the contact (if registered) and end the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_registered(self, registered: bool, timeout: float) -> bool:
        """Wait until the registrar has confirmed the wished state (tests, start-up)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._registered == registered and not self._dirty, timeout)

    # ------------------------------------------------------------------------------------------ the worker

    def _run(self) -> None:
        refresh_at = float("inf")
        while True:
            with self._condition:
                while not self._stopping and not self._dirty and time.monotonic() < refresh_at:
                    self._condition.wait(timeout=min(5.0, max(0.0, refresh_at - time.monotonic())))
                if self._stopping:
                    break
                wanted, q = self._wanted, self._q
            ok = self._register(self.expires if wanted else 0, q)
            with self._condition:
                if ok:
                    changed = self._registered != wanted
                    self._registered = wanted
                    if (self._wanted, self._q) == (wanted, q):
                        self._dirty = False
                    refresh_at = time.monotonic() + self.expires * 0.7 if wanted else float("inf")
                    self._condition.notify_all()
                else:
                    refresh_at = time.monotonic() + 2.0  # retry soon; the wish stays
                    self._dirty = False
                    self._condition.notify_all()
                    changed = False
            if changed and self.on_change is not None:
                try:
                    self.on_change(wanted)
                except Exception:
                    log.exception("team contact listener failed")
        if self._registered:
            self._register(0, None)
            with self._condition:
                self._registered = False
                self._condition.notify_all()

    def _request(self, expires: int, q: float | None, local: tuple[str, int], authorization: str | None) -> str:
        account = self.account
        self._cseq += 1
        uri = f"sip:{account.server}:{account.port}"
        contact = f"<sip:{account.user}@{account.contact_host}:{account.contact_port}>"
        if q is not None:
            contact += f";q={q:.3f}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex[:20]};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.aor}@{account.server}>;tag={self._tag}",
            f"To: <sip:{self.aor}@{account.server}>",
            f"Call-ID: {self._call_id}",
            f"CSeq: {self._cseq} REGISTER",
            f"Contact: {contact};expires={expires}",
            f"Expires: {expires}",
            f"User-Agent: {USER_AGENT}",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        return "\r\n".join([*lines, "Content-Length: 0", "", ""])

    def _register(self, expires: int, q: float | None) -> bool:
        """One REGISTER transaction (with one digest retry); True when the registrar said 2xx."""
        account = self.account
        family = socket.AF_INET6 if ":" in account.server else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((account.contact_host, 0))
                sock.settimeout(self.answer_timeout)
                local = sock.getsockname()[:2]
                authorization: str | None = None
                for _attempt in range(2):
                    sock.sendto(
                        self._request(expires, q, local, authorization).encode(), (account.server, account.port)
                    )
                    status, text = self._final_response(sock)
                    if 200 <= status < 300:
                        self.last_error = ""
                        return True
                    challenge = _challenge(text) if status in (401, 407) else None
                    if challenge is None or authorization is not None:
                        self.last_error = f"the registrar answered {status} to the team contact {self.aor}"
                        break
                    realm, nonce, qop = challenge
                    uri = f"sip:{account.server}:{account.port}"
                    authorization = _digest(realm, nonce, account.user, account.password, uri, qop)
        except OSError as exc:
            self.last_error = f"team contact {self.aor}: {exc}"
        log.warning("%s", self.last_error)
        return False

    def _final_response(self, sock: socket.socket) -> tuple[int, str]:
        """The final response to our latest REGISTER (status 0 when none came in time)."""
        deadline = time.monotonic() + self.answer_timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            text = data.decode(errors="replace")
            match = re.match(r"SIP/2\.0 (\d{3})", text)
            cseq = re.search(r"^CSeq:\s*(\d+)\s+REGISTER", text, re.IGNORECASE | re.MULTILINE)
            if match is None or cseq is None or int(cseq.group(1)) != self._cseq or self._call_id not in text:
                continue
            status = int(match.group(1))
            if status >= 200:
                return status, text
        self.last_error = f"the registrar {self.account.server}:{self.account.port} did not answer"
        return 0, ""


def follow_agent(agent: AgentState, membership: TeamMembership, longest_idle: bool, zone: tzinfo = UTC) -> None:
    """Keep ``membership`` registered exactly while the agent can take a team call (ready, or ringing for
    one, so a missed ring does not churn registrations), with the longest-idle q-value when asked. Idle time
    counts from when the agent last became ready after a call, a break or the desk's start: a call that only
    rang them does not reset it, and a break is not idle time."""
    idle_since = [agent.status.since]
    previous = [agent.status.state]

    def changed(status: AgentStatus) -> None:
        if status.state == "ready" and previous[0] != "ringing":  # back from a call, a break or the start
            idle_since[0] = status.since
        previous[0] = status.state
        wanted = status.state in ("ready", "ringing")
        membership.want(wanted, idle_q(idle_since[0], zone) if longest_idle and wanted else None)

    agent.add_listener(changed)
    changed(agent.status)


def _seen(call: Call, waiting_since: datetime) -> team_calls.TeamCallSeen:
    return team_calls.TeamCallSeen(call.sip_call_id, call.team_number, call.remote_number, waiting_since)


@dataclass(frozen=True)
class Claim:
    """A desk's claim of a team call: ``won`` True (answer it), False (another desk has it) or None (the
    store did not say in time: the desk answers, and ``outcome`` still tells, later, whether it had won)."""

    won: bool | None
    outcome: Future[bool]


class TeamLedger:
    """A desk's writes to team call rows, never holding up or dropping a call: notes (arrival, end of ringing,
    the overflow desk's take and result) in order on one worker thread, claims on another so they never wait
    behind a note. The only thing a call waits for is a claim, and for at most ``timeout``."""

    def __init__(self, database: Database, extension: str, timeout: float = 1.0) -> None:
        self.database = database
        self.extension = extension
        self.timeout = timeout
        self._notes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="team notes")
        self._claims = ThreadPoolExecutor(max_workers=1, thread_name_prefix="team claims")

    def arrived(self, call: Call, waiting_since: datetime) -> None:
        self._note("arrival", lambda session: team_calls.note_arrival(session, _seen(call, waiting_since)))

    def claim(self, call: Call, waiting_since: datetime, answered_at: datetime | None = None) -> Claim:
        """Claim the call for this (agent's) desk, answered now or at ``answered_at`` (a claim after the
        answer); see :class:`Claim`."""
        now, seen = answered_at or datetime.now(UTC), _seen(call, waiting_since)
        after_answer = answered_at is not None
        future: Future[bool] = self._claims.submit(
            self._in_session,
            "claim",
            lambda session: team_calls.claim(session, seen, self.extension, now, answered=after_answer),
        )
        try:
            return Claim(bool(future.result(timeout=self.timeout)), future)
        except FutureTimeout:
            log.warning("team call %s: the store did not confirm the claim in time; answering", call.sip_call_id)
        except Exception:
            log.warning("team call %s: the claim could not be recorded; answering", call.sip_call_id)
        return Claim(None, future)

    def step_aside(self, call: Call) -> None:
        """See :func:`~contactcenter.storage.team_calls.step_aside`; queued with the claims, so it is written
        before this desk's next claim."""
        extension = self.extension
        self._claims.submit(
            self._in_session, "step aside", lambda session: team_calls.step_aside(session, call.sip_call_id, extension)
        )

    def answerer(self, call: Call) -> str | None:
        """Which extension the store says has the answered call ("" while nobody does); None when the call is not
        answered or the store does not say within ``timeout``."""
        future = self._claims.submit(
            self._in_session, "answerer", lambda session: team_calls.answerer(session, call.sip_call_id)
        )
        try:
            return future.result(timeout=self.timeout)
        except Exception:
            return None

    def release(self, call: Call) -> None:
        """Give the claim back; queued with the claims, so it is written after a claim still on its way."""
        extension = self.extension
        self._claims.submit(
            self._in_session, "release", lambda session: team_calls.release(session, call.sip_call_id, extension)
        )

    def overflow_took(self, call: Call, waiting_since: datetime) -> None:
        now, seen = datetime.now(UTC), _seen(call, waiting_since)
        self._note("overflow", lambda session: team_calls.overflow_took(session, seen, self.extension, now))

    def ring_ended(self, call: Call) -> None:
        now = datetime.now(UTC)
        self._note("ring end", lambda session: team_calls.note_ring_ended(session, call.sip_call_id, now))

    def overflow_settled(self, call: Call, callback_id: int | None) -> None:
        self._note(
            "overflow result", lambda session: team_calls.settle_overflow(session, call.sip_call_id, callback_id)
        )

    def _in_session(self, what: str, work: Callable[[Session], T]) -> T:
        try:
            with self.database.session() as session:
                return work(session)
        except Exception:
            log.exception("team call record: %s failed", what)
            raise

    def _note(self, what: str, work: Callable[[Session], object]) -> None:
        self._notes.submit(self._in_session, what, work)

    def close(self) -> None:
        """Write what is queued (the desk is stopping)."""
        self._notes.shutdown(wait=True)
        self._claims.shutdown(wait=True)
