"""The reviewers' working pages: my queue (质检任务), the disputes a team lead decides (申诉), the queue's
status per reviewer and the calibration tables, with their JSON and CSV beside them.

A reviewer sees their own queue; supervisors (team leads) and admins also see every reviewer's status, the
disputes to decide, and calibration: how often reviewers agreed with the machine per rule, and with the
team lead per reviewer on the calls both reviewed. Building the queue is the scheduler's (nightly) or
``contactcenter review build``'s job; nothing here builds it.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.storage.models import Dispute
from contactcenter.storage.review_queue import (
    QueueError,
    day_bounds,
    decide_dispute,
    my_queue,
    next_in_queue,
    queue_status,
    reviewer_agreement,
    rule_agreement,
)
from contactcenter.web.auth import SignedIn
from contactcenter.web.customers import mask_text
from contactcenter.web.exports import csv_response
from contactcenter.web.guards import TEMPLATES, Guards, RowId
from contactcenter.web.queries import local_time
from contactcenter.web.reports import period_dependency
from contactcenter.web.scorecards import Period


def add_review_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    Supervisor = Annotated[SignedIn, Depends(guards.role("supervisor"))]

    def today() -> date:
        return datetime.now(UTC).astimezone(zone).date()

    def period(days: Annotated[Period, Depends(period_dependency(zone))]) -> tuple[date, date]:
        """Local days, both included: the last 30 by default, at most a year (as every report's)."""
        return days.since, days.until

    Days = Annotated[tuple[date, date], Depends(period)]

    def queue_rows(user: SignedIn) -> dict[str, list[dict[str, Any]]]:
        with database.session() as session:
            found = my_queue(session, user.user_id, today(), zone)
        return {
            state: [
                {
                    "call_id": item.call_id,
                    "day": item.day,
                    "reason": item.reason,
                    "invited_at": local_time(item.invited_at, zone),
                    "agent": item.agent,
                    "score": item.score,
                    "done_at": local_time(item.done_at, zone),
                }
                for item in items
            ]
            for state, items in found.items()
        }

    # ------------------------------------------------------------------------------------------ the queue

    @app.get("/queue", response_class=HTMLResponse, include_in_schema=False)
    def queue_page(request: Request, user: Reviewer) -> Response:
        return TEMPLATES.TemplateResponse(request, "queue.html", {"user": user, "queue": queue_rows(user)})

    @app.get("/queue/next", include_in_schema=False)
    def queue_next(user: Reviewer, after: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
        """Open the next call of one's queue (after ``after``, the call just reviewed); the queue when none."""
        with database.session() as session:
            call_id = next_in_queue(session, user.user_id, after)
        return RedirectResponse(f"/calls/{call_id}" if call_id else "/queue", status_code=303)

    @app.get("/api/queue", tags=["review queue"])
    def api_queue(user: Reviewer) -> dict[str, Any]:
        """The signed-in reviewer's queue: ``pending``, ``in_review``, ``disputed`` and ``reviewed`` (today)."""
        return queue_rows(user)

    # ------------------------------------------------------------------------------------ status, export

    def status_table(days: tuple[date, date]) -> list[dict[str, Any]]:
        with database.session() as session:
            return queue_status(session, *days)

    @app.get("/api/review/status", tags=["review queue"])
    def api_status(user: Supervisor, days: Days) -> dict[str, Any]:
        """Per reviewer over the days: tasks pending, in review, reviewed, in dispute."""
        return {"since": days[0].isoformat(), "until": days[1].isoformat(), "reviewers": status_table(days)}

    @app.get("/api/export/review-status.csv", tags=["exports"])
    def export_status(user: Reviewer, days: Days) -> Response:
        """The queue's status per reviewer as CSV (Chinese headings)."""
        names = app.state.vocabulary
        rows = [
            {
                "质检员": row["name"],
                "账号": row["reviewer"],
                **{
                    names.name("review_state", state): row[state]
                    for state in ("pending", "in_review", "reviewed", "disputed")
                },
                "合计": row["total"],
            }
            for row in status_table(days)
        ]
        columns = [
            "质检员",
            "账号",
            *(names.name("review_state", s) for s in ("pending", "in_review", "reviewed", "disputed")),
            "合计",
        ]
        return csv_response(f"质检任务进度_{days[0]}_{days[1]}.csv", (columns, rows))

    # ----------------------------------------------------------------------------------------- disputes

    def dispute_rows(state: str | None, user: SignedIn) -> list[dict[str, Any]]:
        """Disputes newest first; the agent's reason and the lead's note are free text, masked as everywhere."""
        shown = (lambda text: text) if guards.unmasked(user) else mask_text
        query = select(Dispute).order_by(Dispute.raised_at.desc(), Dispute.id.desc()).limit(500)
        if state:
            query = query.where(Dispute.state == state)
        with database.session() as session:
            return [
                {
                    "id": d.id,
                    "call_id": d.call_id,
                    "rule_id": d.rule_id,
                    "raised_by": d.raised_by,
                    "reason": shown(d.reason),
                    "raised_at": local_time(d.raised_at, zone),
                    "state": d.state,
                    "decided_by": d.decided_by,
                    "decided_at": local_time(d.decided_at, zone),
                    "decision": shown(d.decision),
                }
                for d in session.scalars(query)
            ]

    @app.get("/disputes", response_class=HTMLResponse, include_in_schema=False)
    def disputes_page(request: Request, user: Supervisor) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            "disputes.html",
            {"user": user, "open": dispute_rows("open", user), "decided": dispute_rows(None, user)},
        )

    @app.get("/api/review/disputes", tags=["review queue"])
    def api_disputes(
        user: Supervisor, state: Annotated[str | None, Query(pattern="^(open|upheld|rejected)$")] = None
    ) -> dict[str, Any]:
        """Disputes (申诉), newest first; ``state`` open, upheld or rejected."""
        return {"disputes": dispute_rows(state, user)}

    @app.post("/disputes/{dispute_id}/decision", include_in_schema=False)
    def decide_form(
        user: Supervisor,
        dispute_id: RowId,
        csrf: Annotated[str, Form(max_length=200)],
        outcome: Annotated[str, Form(pattern="^(upheld|rejected)$")],
        decision: Annotated[str, Form(max_length=4000)] = "",
    ) -> Response:
        """The team lead's final decision on a dispute, with the reason."""
        guards.check_csrf(user, csrf)
        try:
            with database.session() as session:
                decide_dispute(session, dispute_id, outcome == "upheld", user.display_name or user.username, decision)
        except QueueError as refused:
            raise HTTPException(status_code=422, detail=str(refused)) from None
        return RedirectResponse("/disputes", status_code=303)

    # -------------------------------------------------------------------------------------- calibration

    def calibration(days: tuple[date, date]) -> dict[str, Any]:
        start, end = day_bounds(days[0], zone)[0], day_bounds(days[1], zone)[1]
        with database.session() as session:
            return {
                "since": days[0].isoformat(),
                "until": days[1].isoformat(),
                "rules": rule_agreement(session, start, end),
                "reviewers": reviewer_agreement(session, start, end),
            }

    @app.get("/calibration", response_class=HTMLResponse, include_in_schema=False)
    def calibration_page(request: Request, user: Supervisor, days: Days) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "calibration.html", {"user": user, "c": calibration(days), "status": status_table(days)}
        )

    @app.get("/api/review/calibration", tags=["review queue"])
    def api_calibration(user: Supervisor, days: Days) -> dict[str, Any]:
        """Per rule: reviewers' verdicts on its findings and the share that agreed with the machine; per
        reviewer: verdicts shared with the team lead on calibration calls and the share that matched."""
        return calibration(days)

    @app.get("/api/export/calibration.csv", tags=["exports"])
    def export_calibration(
        user: Reviewer, days: Days, table: Annotated[str, Query(pattern="^(rules|reviewers)$")] = "rules"
    ) -> Response:
        """A calibration table as CSV: ``rules`` (reviewers vs the machine) or ``reviewers`` (vs the lead)."""
        found = calibration(days)
        names = app.state.vocabulary
        if table == "rules":
            rows = [
                {
                    "规则": names.name("rule", r["rule_id"]),
                    "规则编号": r["rule_id"],
                    "复核条数": r["verdicts"],
                    "同意条数": r["agreed"],
                    "一致率(%)": r["agreement"],
                }
                for r in found["rules"]
            ]
            columns = ["规则", "规则编号", "复核条数", "同意条数", "一致率(%)"]
        else:
            rows = [
                {
                    "质检员": r["name"],
                    "账号": r["reviewer"],
                    "共同判定条数": r["shared_verdicts"],
                    "与组长一致条数": r["matched"],
                    "一致率(%)": r["agreement"],
                }
                for r in found["reviewers"]
            ]
            columns = ["质检员", "账号", "共同判定条数", "与组长一致条数", "一致率(%)"]
        return csv_response(f"质检校准_{table}_{days[0]}_{days[1]}.csv", (columns, rows))
