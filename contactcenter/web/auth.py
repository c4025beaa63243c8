"""Who is signed in to the reviewer console, and what their role lets them do.

Passwords are hashed with Argon2id (argon2-cffi, the hash the Password Hashing Competition chose). A
session is a random token in an HttpOnly cookie; the database keeps only its SHA-256 and an expiry, so a
stolen copy of the database signs nobody in. Every form and JSON write also carries the session's CSRF
token. Roles are ordered: a supervisor may do what a reviewer does, an admin what a supervisor does.

Sign-in is guarded three ways. Failures are counted per user name (as typed: an unknown name is counted and
locked exactly like a real one, so a lock tells nothing about who exists) and per client address; too many
within the window lock the name or the address, each lock in a row twice as long as the one before, until it
runs out or an admin lifts it (`contactcenter users unlock`). The counts live in the database
(``sign_in_throttles``), so a restart forgets nothing and every console process on one PostgreSQL shares
them; this is hand-written because the rate-limit libraries (slowapi, pyrate-limiter) keep their state in
memory, Redis or tables of their own, and have no lockout an admin can lift. Every sign-in is written to the
application log and to ``sign_in_attempts`` (never the password). And only ``hash_slots`` Argon2 checks run at
once (each takes 64 MiB): a burst of sign-ins waits for a slot a little, then is told to try again later.

New passwords must pass a policy (``password_problem``): long enough, not the user name, not one short
pattern repeated, not blank, not in the common-password list shipped beside this module.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from contactcenter.settings import WebSettings
from contactcenter.storage.database import Database
from contactcenter.storage.models import WEB_ROLES, SignInAttempt, SignInThrottle, WebSession, WebUser

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MIN_PASSWORD_LENGTH = 10
MAX_USERNAME_LENGTH = 64  # web_users.username, and the throttle's and the log's user name columns
_hasher = PasswordHasher()
# Verifying against this when the user does not exist takes as long as a real check: no timing oracle.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

FAILED = ("wrong_password", "unknown_user", "disabled")  # outcomes that count towards a lock
BUSY_MESSAGE = "登录请求过多，请稍后再试"


class AuthError(Exception):
    """A user cannot be created or changed as asked (the message says why)."""


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    display_name: str
    role: str
    csrf_token: str

    def may(self, role: str) -> bool:
        """Whether this user's role includes ``role`` (admin ⊃ supervisor ⊃ reviewer)."""
        return WEB_ROLES.index(self.role) >= WEB_ROLES.index(role)


@dataclass(frozen=True)
class Throttle:
    """How many failures lock a user name or an address and for how long, and how many password checks run at
    once. The defaults are [web]'s in settings.toml; tests pass short ones."""

    user_failures: int = 5
    address_failures: int = 30
    window: timedelta = timedelta(minutes=15)
    lock: timedelta = timedelta(minutes=15)
    lock_max: timedelta = timedelta(days=1)
    hash_slots: int = 2
    wait_seconds: float = 3.0
    log_keep: timedelta = timedelta(days=180)

    @classmethod
    def from_settings(cls, web: WebSettings) -> Throttle:
        return cls(
            user_failures=web.sign_in_user_failures,
            address_failures=web.sign_in_address_failures,
            window=timedelta(minutes=web.sign_in_window_minutes),
            lock=timedelta(minutes=web.sign_in_lock_minutes),
            lock_max=timedelta(minutes=web.sign_in_lock_max_minutes),
            hash_slots=web.sign_in_hash_slots,
            wait_seconds=web.sign_in_wait_seconds,
            log_keep=timedelta(days=web.sign_in_log_days),
        )

    def lock_length(self, lockouts_before: int) -> timedelta:
        """The lock after ``lockouts_before`` locks in a row: lock, 2×lock, 4×lock, … up to lock_max."""
        return min(self.lock * 2 ** min(lockouts_before, 30), self.lock_max)


@dataclass(frozen=True)
class SignInResult:
    """What came of a sign-in: ``outcome`` is ok, wrong_password, unknown_user, disabled, locked or busy."""

    outcome: str
    token: str | None = None
    retry_after_s: int = 0  # locked or busy: when to try again

    @property
    def status_code(self) -> int:
        """The HTTP status to answer with: 200, 401 for a failure, 429 for a lock or a burst."""
        return 200 if self.outcome == "ok" else 429 if self.outcome in ("locked", "busy") else 401

    @property
    def message(self) -> str:
        """What the person signing in is told (the same for an unknown user as for a wrong password)."""
        if self.outcome == "ok":
            return ""
        if self.outcome == "locked":
            minutes = max(1, math.ceil(self.retry_after_s / 60))
            return f"登录失败次数过多，已暂时锁定。请 {minutes} 分钟后再试，或请管理员解锁。"
        if self.outcome == "busy":
            return BUSY_MESSAGE
        return "用户名或密码错误"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    text = files("contactcenter.web").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be a console user name, or None."""
    if not username.strip():
        return "用户名不能为空 (the user name must not be empty)"
    if username != username.strip() or not username.isprintable():
        return "用户名不能以空格开头或结尾，也不能含控制字符 (no surrounding spaces or control characters)"
    if len(username) > MAX_USERNAME_LENGTH:
        return f"用户名最多 {MAX_USERNAME_LENGTH} 个字符 (at most {MAX_USERNAME_LENGTH} characters)"
    return None


def _repeats(text: str) -> bool:
    """Whether ``text`` is one character or one shorter piece said again and again (aaaaaaaaaa, 1212121212)."""
    return any(text == text[:n] * (len(text) // n) for n in range(1, len(text) // 2 + 1) if len(text) % n == 0)


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` is too weak for ``username``, or None (NIST SP 800-63B: length, and not a known or
    guessable one; no composition rules)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符 "
            f"(the password must have at least {MIN_PASSWORD_LENGTH} characters)"
        )
    if not password.strip():
        return "密码不能只有空白 (the password must not be only spaces)"
    folded = password.strip().casefold()
    name = username.strip().casefold()
    if name and folded in (name, name[::-1]):
        return "密码不能是用户名或其倒写 (the password must not be the user name, or it reversed)"
    if _repeats(password):
        return "密码不能是同一个字符或同一段重复 (the password must not repeat one character or one pattern)"
    if folded in common_passwords() or password.casefold() in common_passwords():
        return "密码太常见，容易被猜到 (the password is one of the most common ones)"
    return None


class Accounts:
    def __init__(
        self,
        database: Database,
        session_minutes: int,
        throttle: Throttle | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.database = database
        self.lifetime = timedelta(minutes=session_minutes)
        self.throttle = throttle or Throttle()
        self.clock = clock
        # Argon2 takes 64 MiB per check: this many at once in this process, however many sign-ins arrive.
        self.hash_slots = threading.BoundedSemaphore(self.throttle.hash_slots)

    @classmethod
    def for_console(cls, database: Database, web: WebSettings) -> Accounts:
        """The console's accounts, throttled as [web] says."""
        return cls(database, web.session_minutes, Throttle.from_settings(web))

    # ---------------------------------------------------------------------------------------------- users

    def add_user(self, username: str, password: str, role: str, display_name: str = "") -> None:
        if role not in WEB_ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(WEB_ROLES)}")
        problem = username_problem(username) or password_problem(username, password)
        if problem:
            raise AuthError(problem)
        password_hash = self._hash(password)
        try:
            with self.database.session() as session:
                session.add(
                    WebUser(
                        username=username,
                        role=role,
                        display_name=display_name or username,
                        password_hash=password_hash,
                    )
                )
        except IntegrityError:
            raise AuthError(f"user {username!r} already exists") from None

    def set_password(self, username: str, password: str) -> None:
        problem = password_problem(username, password)
        if problem:
            raise AuthError(problem)
        password_hash = self._hash(password)
        with self.database.session() as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            if user is None:
                raise AuthError(f"no user {username!r}")
            user.password_hash = password_hash
            session.execute(delete(WebSession).where(WebSession.user_id == user.id))  # signed out everywhere

    def set_active(self, username: str, active: bool) -> None:
        with self.database.session() as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            if user is None:
                raise AuthError(f"no user {username!r}")
            user.active = active
            if not active:
                session.execute(delete(WebSession).where(WebSession.user_id == user.id))

    def users(self) -> list[WebUser]:
        with self.database.session() as session:
            users = list(session.scalars(select(WebUser).order_by(WebUser.username)))
            session.expunge_all()
            return users

    def _hash(self, password: str) -> str:
        with self.hash_slots:
            return _hasher.hash(password)

    # ------------------------------------------------------------------------------------------- sign-in

    def sign_in(self, username: str, password: str, address: str = "") -> str | None:
        """A new session token for the right password of an active user that is not locked; None otherwise."""
        return self.attempt(username, password, address).token

    def attempt(self, username: str, password: str, address: str = "") -> SignInResult:
        """Sign in from ``address`` (the client's IP), throttled, bounded and logged: see the module's text."""
        # what was typed is logged, but never a control character (PostgreSQL refuses NUL; a newline forges lines)
        name = "".join(c if c.isprintable() else "\ufffd" for c in username[:MAX_USERNAME_LENGTH])
        address = address[:64]
        with self.database.session() as session:  # a locked name is refused before any hashing
            until = self._locked_until(session, name, address, self.clock())
        if until is not None:
            return self._refused_locked(name, address, until)
        if not self.hash_slots.acquire(timeout=self.throttle.wait_seconds):
            self._record(name, address, "busy")
            return SignInResult("busy", retry_after_s=1)
        try:
            with self.database.session() as session:
                # Again, holding the slot: sign-ins that waited for it must see the lock the ones before set.
                until = self._locked_until(session, name, address, self.clock())
                user = session.scalar(select(WebUser).where(WebUser.username == name))  # users never hold one
                stored = (user.id, user.password_hash, user.active) if user is not None else None
            if until is not None:
                return self._refused_locked(name, address, until)
            try:
                _hasher.verify(stored[1] if stored is not None else _DUMMY_HASH, password)
                right = True
            except (VerificationError, InvalidHashError):
                right = False
            rehashed = _hasher.hash(password) if right and stored and _hasher.check_needs_rehash(stored[1]) else None
        finally:
            self.hash_slots.release()
        if stored is None or not right or not stored[2]:
            outcome = "unknown_user" if stored is None else "wrong_password" if not right else "disabled"
            return self._failed(name, address, outcome)
        return self._succeeded(stored[0], name, address, rehashed)

    def _locked_until(self, session: Session, name: str, address: str, now: datetime) -> datetime | None:
        locks = [
            row.locked_until
            for row in (session.get(SignInThrottle, ("user", name)), session.get(SignInThrottle, ("address", address)))
            if row is not None and row.locked_until is not None and row.locked_until > now
        ]
        return max(locks, default=None)

    def _refused_locked(self, name: str, address: str, until: datetime) -> SignInResult:
        self._record(name, address, "locked")
        return SignInResult("locked", retry_after_s=max(1, math.ceil((until - self.clock()).total_seconds())))

    def _failed(self, name: str, address: str, outcome: str) -> SignInResult:
        now = self.clock()

        def count(session: Session) -> list[datetime | None]:
            self._log(session, name, address, outcome, now)
            return [
                self._count_failure(session, "user", name, self.throttle.user_failures, now),
                self._count_failure(session, "address", address, self.throttle.address_failures, now),
            ]

        locks = self._transaction(count)
        self.prune()
        until = max((lock for lock in locks if lock is not None), default=None)
        if until is None:
            return SignInResult(outcome)
        return SignInResult("locked", retry_after_s=max(1, math.ceil((until - now).total_seconds())))

    def _count_failure(self, session: Session, scope: str, key: str, limit: int, now: datetime) -> datetime | None:
        """Count one failure for ``scope``/``key``; the end of the lock it starts if it is the one too many.

        Atomic across processes: the row is made if missing (a no-op when it is there), then incremented in
        one UPDATE, which holds the row until commit, so concurrent failures are all counted."""
        row = SignInThrottle
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(
            insert(row)
            .values(scope=scope, key=key, failures=0, window_start=now, last_failure_at=now, lockouts=0)
            .on_conflict_do_nothing()
        )
        in_window = row.window_start > now - self.throttle.window
        where = (row.scope == scope, row.key == key)
        session.execute(
            update(row)
            .where(*where)
            .values(
                failures=case((in_window, row.failures + 1), else_=1),
                window_start=case((in_window, row.window_start), else_=literal(now, row.window_start.type)),
                last_failure_at=now,
            )
        )
        failures, lockouts = session.execute(select(row.failures, row.lockouts).where(*where)).one()
        if failures < limit:
            return None
        until = now + self.throttle.lock_length(lockouts)
        session.execute(
            update(row)
            .where(*where)
            .values(failures=0, window_start=now, lockouts=row.lockouts + 1, locked_until=until)
        )
        log.warning("sign-in lock: %s %r locked until %s after %d failures", scope, key, until.isoformat(), failures)
        return until

    def _succeeded(self, user_id: int, name: str, address: str, rehashed: str | None) -> SignInResult:
        now = self.clock()
        token = secrets.token_urlsafe(32)

        def open_session(session: Session) -> None:
            if rehashed is not None:
                session.execute(update(WebUser).where(WebUser.id == user_id).values(password_hash=rehashed))
            session.execute(delete(WebSession).where(WebSession.expires_at < now))
            session.execute(delete(SignInThrottle).where(SignInThrottle.scope == "user", SignInThrottle.key == name))
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=user_id,
                    csrf_token=secrets.token_urlsafe(24),
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
            self._log(session, name, address, "ok", now)

        self._transaction(open_session)
        self.prune()
        return SignInResult("ok", token=token)

    def _record(self, name: str, address: str, outcome: str) -> None:
        now = self.clock()
        self._transaction(lambda session: self._log(session, name, address, outcome, now))

    def _transaction(self, work: Callable[[Session], _T]) -> _T:
        """``work`` in one transaction, redone whole (the failed try was rolled back) if the database was too
        busy: SQLite's write lock held past its busy timeout by a writer the CPU starves (sign-ins hash on every
        core), or a PostgreSQL deadlock. Three tries; the last error is raised."""
        for attempt in range(3):
            try:
                with self.database.session() as session:
                    return work(session)
            except OperationalError as exc:
                if attempt == 2:
                    raise
                log.info("sign-in bookkeeping retried: %s", exc.orig)
        raise AssertionError("unreachable")

    def _log(self, session: Session, name: str, address: str, outcome: str, now: datetime) -> None:
        """One sign-in in the application log and in ``sign_in_attempts``; old rows and stale counts go."""
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "sign-in %s: user %r from %r", outcome, name, address)
        session.add(SignInAttempt(at=now, username=name, address=address, outcome=outcome))

    def prune(self) -> None:
        """Drop the sign-ins older than the log keeps, and the counts of names and addresses quiet for longer
        than a window plus the longest lock (their back-off is forgiven). Housekeeping in its own transaction,
        after a sign-in: if it collides with another process doing the same, the next one does it."""
        now = self.clock()
        quiet = now - self.throttle.window - self.throttle.lock_max
        try:
            with self.database.session() as session:
                session.execute(delete(SignInAttempt).where(SignInAttempt.at < now - self.throttle.log_keep))
                session.execute(
                    delete(SignInThrottle).where(
                        SignInThrottle.last_failure_at < quiet,
                        SignInThrottle.locked_until.is_(None) | (SignInThrottle.locked_until < now),
                    )
                )
        except DBAPIError as exc:
            log.info("sign-in housekeeping put off: %s", exc)

    # ------------------------------------------------------------------------------------ locks and the log

    def unlock(self, username: str = "", address: str = "") -> int:
        """Lift the lock and forget the failures of a user name and/or an address; how many were there."""
        keys = [("user", username)] if username else []
        keys += [("address", address)] if address else []
        with self.database.session() as session:
            lifted = 0
            for scope, key in keys:
                row = session.get(SignInThrottle, (scope, key))
                if row is not None:
                    lifted += 1
                    session.delete(row)
                    log.warning(
                        "sign-in unlock: %s %r (had %d failures, locked until %s)",
                        scope,
                        key,
                        row.failures,
                        row.locked_until,
                    )
            return lifted

    def locks(self) -> list[SignInThrottle]:
        """The user names and addresses locked now, soonest released first."""
        with self.database.session() as session:
            rows = list(
                session.scalars(
                    select(SignInThrottle)
                    .where(SignInThrottle.locked_until > self.clock())
                    .order_by(SignInThrottle.locked_until)
                )
            )
            session.expunge_all()
            return rows

    def sign_ins(self, username: str | None = None, limit: int = 50) -> list[SignInAttempt]:
        """The latest sign-ins, newest first (of one user name if given)."""
        query = select(SignInAttempt).order_by(SignInAttempt.at.desc(), SignInAttempt.id.desc()).limit(limit)
        if username is not None:
            query = query.where(SignInAttempt.username == username)
        with self.database.session() as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    # ------------------------------------------------------------------------------------------ sessions

    def signed_in(self, token: str | None) -> SignedIn | None:
        """The user behind a session cookie, if the session exists, has not expired and the user is active."""
        if not token:
            return None
        now = self.clock()
        with self.database.session() as session:
            row = session.get(WebSession, _digest(token))
            if row is None or row.expires_at <= now or not row.user.active:
                return None
            user = row.user
            return SignedIn(user.id, user.username, user.display_name, user.role, row.csrf_token)

    def sign_out(self, token: str | None) -> None:
        if token:
            with self.database.session() as session:
                session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))
