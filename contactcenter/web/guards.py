"""Who is signed in and what they may do: the dependencies every console route declares, shared by the
page, report and live-view modules.

No `from __future__ import annotations`: FastAPI reads these signatures.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator

from contactcenter.web.auth import Accounts, SignedIn

T = TypeVar("T")
# A query parameter a form may send empty (an unfilled date or number box): empty means "not given".
Blank = Annotated[T | None, BeforeValidator(lambda value: None if value == "" else value)]

COOKIE = "cc_session"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class NotSignedIn(Exception):
    """No valid session: 401 (JSON for the API, the sign-in form for pages)."""


class Guards:
    """Who is signed in, and whether they may: the dependencies every route declares."""

    def __init__(self, accounts: Accounts, unmasked_roles: Sequence[str]) -> None:
        self.accounts = accounts
        self.unmasked_roles = tuple(unmasked_roles)

    def current(self, request: Request) -> SignedIn:
        user = self.accounts.signed_in(request.cookies.get(COOKIE))
        if user is None:
            raise NotSignedIn()
        return user

    def role(self, needed: str):
        """A dependency that lets through users with ``needed`` or a higher role (403 for the others)."""

        def check(user: Annotated[SignedIn, Depends(self.current)]) -> SignedIn:
            if not user.may(needed):
                raise HTTPException(status_code=403, detail=f"needs the {needed} role")
            return user

        return check

    @staticmethod
    def check_csrf(user: SignedIn, token: str | None) -> None:
        if not token or token != user.csrf_token:
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token")

    def unmasked(self, user: SignedIn) -> bool:
        """Whether this user's role sees customers' numbers in full."""
        return user.role in self.unmasked_roles
