"""Who is signed in to the reviewer console, and what their role lets them do.

Passwords are hashed with Argon2id (argon2-cffi, the hash the Password Hashing Competition chose). A
session is a random token in an HttpOnly cookie; the database keeps only its SHA-256 and an expiry, so a
stolen copy of the database signs nobody in. Every form and JSON write also carries the session's CSRF
token. Roles are ordered: a supervisor may do what a reviewer does, an admin what a supervisor does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from contactcenter.storage.database import Database
from contactcenter.storage.models import WEB_ROLES, WebSession, WebUser

MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verifying against this when the user does not exist takes as long as a real check: no timing oracle.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


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


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, database: Database, session_minutes: int) -> None:
        self.database = database
        self.lifetime = timedelta(minutes=session_minutes)

    def add_user(self, username: str, password: str, role: str, display_name: str = "") -> None:
        if role not in WEB_ROLES:
            raise AuthError(f"unknown role {role!r}; one of {', '.join(WEB_ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AuthError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        try:
            with self.database.session() as session:
                session.add(
                    WebUser(
                        username=username,
                        role=role,
                        display_name=display_name or username,
                        password_hash=_hasher.hash(password),
                    )
                )
        except IntegrityError:
            raise AuthError(f"user {username!r} already exists") from None

    def set_password(self, username: str, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AuthError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        with self.database.session() as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            if user is None:
                raise AuthError(f"no user {username!r}")
            user.password_hash = _hasher.hash(password)
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

    def sign_in(self, username: str, password: str) -> str | None:
        """A new session token for the right password of an active user; None otherwise."""
        with self.database.session() as session:
            user = session.scalar(select(WebUser).where(WebUser.username == username))
            try:
                _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                return None
            if user is None or not user.active:
                return None
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            now = datetime.now(UTC)
            session.execute(delete(WebSession).where(WebSession.expires_at < now))
            token = secrets.token_urlsafe(32)
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(24),
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
            return token

    def signed_in(self, token: str | None) -> SignedIn | None:
        """The user behind a session cookie, if the session exists, has not expired and the user is active."""
        if not token:
            return None
        now = datetime.now(UTC)
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
