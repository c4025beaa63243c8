"""Who is signed in and what they may do: the dependencies every console route declares, shared by the
page, report and live-view modules; and the bounds every value from outside is held to before it reaches the
store (dates, ids, scores, lengths), with the reasons a person reads when a value is refused.

No `from __future__ import annotations`: FastAPI reads these signatures.
"""

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParameter
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator, Field

from contactcenter.vocabulary import Vocabulary
from contactcenter.web.auth import Accounts, SignedIn

T = TypeVar("T")
# A query parameter a form may send empty (an unfilled date or number box): empty means "not given".
Blank = Annotated[T | None, BeforeValidator(lambda value: None if value == "" else value)]

# ------------------------------------------------------------------------------------------ input bounds
# A value outside these is refused with 422 and the reason, before it reaches the store: a year-9999 date
# overflows the time arithmetic, an id past 32 bits overflows PostgreSQL's INTEGER id columns (and a 20-digit
# one SQLite's 64-bit integers), and PostgreSQL refuses text with a NUL character.

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)
MAX_ID = 2**31 - 1  # the id columns are INTEGER: 32 bits on PostgreSQL
MAX_TEXT = 100  # a filter or search box: an extension, a rule id, a category, part of a name
NO_NUL = r"^[^\x00]*$"

Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]
Score = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
# A record's id in a path: one that cannot exist is refused (422) rather than looked up.
PathId = Annotated[int, PathParameter(ge=1, le=MAX_ID, examples=[1])]

COOKIE = "cc_session"


def _csp_nonce(request: Request) -> dict[str, Any]:
    """The Content-Security-Policy nonce of this response (app.py sets it), for the pages' own <script> and
    <style> elements: the policy lets through no other inline code."""
    return {"csp_nonce": getattr(request.state, "csp_nonce", "")}


def _vocabulary(request: Request) -> dict[str, Any]:
    """``zh(kind, code)``: the Chinese name of a stored code (scripts_zh/vocabulary.toml, the rules'
    descriptions), the one way every page names a severity, a state, a role or a rule."""
    names: Vocabulary = getattr(request.app.state, "vocabulary", None) or Vocabulary()
    return {"zh": names.name, "vocabulary": names}


TEMPLATES = Jinja2Templates(
    directory=str(Path(__file__).parent / "templates"), context_processors=[_csp_nonce, _vocabulary]
)

# What a person reads when a value is refused: the field's name and the reason, in Chinese.
FIELD_NAMES = {
    "since": "开始日期",
    "until": "结束日期",
    "agent": "坐席分机",
    "team": "班组",
    "score_min": "最低分",
    "score_max": "最高分",
    "rule_failed": "未通过规则",
    "category": "类别",
    "complaint": "投诉",
    "cursor": "翻页位置",
    "before": "翻页位置",
    "after": "事件编号",
    "limit": "条数",
    "q": "搜索内容",
    "group_by": "分组方式",
    "part": "表格",
    "call_id": "通话编号",
    "customer_id": "客户编号",
    "rule_id": "规则",
    "comment": "复核意见",
    "verdicts": "复核结论",
    "enabled": "启用",
    "severity": "严重程度",
    "weight": "权重",
    "phrases": "话术",
    "username": "用户名",
    "action": "操作",
    "target": "访问内容",
    "password": "密码",
}


def _reason(error: Mapping[str, Any]) -> str:
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind in ("greater_than_equal", "greater_than"):
        return f"不能小于 {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"不能大于 {ctx.get('le', ctx.get('lt'))}"
    if kind == "finite_number":
        return "必须是有限的数字"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return "必须是数字"
    if kind.startswith("date") or kind.startswith("datetime"):
        return "不是有效的日期(格式如 2026-11-02)"
    if kind == "string_too_long":
        return f"最多 {ctx.get('max_length')} 个字"
    if kind == "too_long":
        return f"最多 {ctx.get('max_length')} 项"
    if kind == "string_pattern_mismatch":
        return "含有不允许的字符"
    if kind == "missing":
        return "不能为空"
    if kind in ("literal_error", "enum", "bool_parsing", "bool_type"):
        return "取值无效"
    return str(error.get("msg", "取值无效"))


def explain(errors: Sequence[Mapping[str, Any]]) -> str:
    """Validation errors as one line of Chinese: 结束日期不能大于 2100-12-31;复核意见最多 4000 个字."""
    parts = []
    for error in errors:
        where = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body", "header")]
        known = [FIELD_NAMES[part] for part in where if part in FIELD_NAMES]
        name = known[-1] if known else (where[-1] if where else "输入")
        parts.append(f"{name}{_reason(error)}")
    return ";".join(dict.fromkeys(parts)) or "输入有误"


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
        request.state.user = user  # for the access log (web.access), once the read has succeeded
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
