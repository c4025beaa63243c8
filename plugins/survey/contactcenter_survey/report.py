"""`contactcenter survey report`: response rate against the target, and the average answer per question,
overall, per agent or per period.

A survey counts as *invited* when its callback was made (cancelled ones aside) and as *responded* when at
least one question was answered with a key 1-5. The surveys come from the plugin API
(``api.survey_invitations``) and are grouped here, in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import click

from contactcenter.hooks.api import PluginAPI, SurveyInvitation
from contactcenter.output import Format, emit_rows

GroupBy = Literal["none", "agent", "day", "week", "month"]


@dataclass
class Group:
    invited: int = 0
    responded: int = 0
    totals: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def rate(self) -> float:
        return self.responded / self.invited if self.invited else 0.0


def period_of(moment: datetime, zone: ZoneInfo, by: GroupBy) -> str:
    local = moment.astimezone(zone).date()
    if by == "day":
        return local.isoformat()
    if by == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m")


def day_bounds(since: date | None, until: date | None, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """``[since, until]`` in days of the desk's time zone as ``[start, end)`` moments."""
    return (
        datetime.combine(since, time(), zone) if since is not None else None,
        datetime.combine(until + timedelta(days=1), time(), zone) if until is not None else None,
    )


def survey_groups(surveys: Iterable[SurveyInvitation], zone: ZoneInfo, by: GroupBy) -> dict[str, Group]:
    """The surveys grouped overall, per agent or per period (of when they were invited)."""
    groups: dict[str, Group] = defaultdict(Group)
    for survey in surveys:
        extension = survey.agent_extension
        name = (
            "all"
            if by == "none"
            else (extension or "(none)")
            if by == "agent"
            else period_of(survey.invited_at, zone, by)
        )
        group = groups[name]
        group.invited += 1
        responded = False
        for answer in survey.answers:
            if answer.outcome == "answered" and answer.value is not None:
                group.totals[answer.question].append(answer.value)
                responded = True
        group.responded += int(responded)
    return dict(sorted(groups.items()))


def surveys_between(api: PluginAPI, since: date | None, until: date | None) -> list[SurveyInvitation]:
    """The surveys invited from day ``since`` to day ``until`` (inclusive, in the desk's time zone)."""
    return api.survey_invitations(*day_bounds(since, until, api.timezone))


def report_rows(groups: dict[str, Group], target: float) -> tuple[list[dict[str, Any]], list[str]]:
    questions = sorted({q for g in groups.values() for q in g.totals})
    rows = []
    for name, group in groups.items():
        row: dict[str, Any] = {
            "group": name,
            "invited": group.invited,
            "responded": group.responded,
            "response_rate": round(group.rate, 3),
            "meets_target": group.rate >= target,
        }
        for question in questions:
            values = group.totals.get(question, [])
            row[f"avg_{question}"] = round(sum(values) / len(values), 2) if values else None
        rows.append(row)
    return rows, ["group", "invited", "responded", "response_rate", "meets_target"] + [f"avg_{q}" for q in questions]


def register_report_command(cli: click.Group) -> None:
    @cli.group("survey")
    def survey() -> None:
        """Satisfaction surveys by phone (满意度调查)."""

    @survey.command("report")
    @click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="From this day (desk's time zone).")
    @click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="To this day, inclusive.")
    @click.option(
        "--by",
        type=click.Choice(["none", "agent", "day", "week", "month"]),
        default="none",
        show_default=True,
        help="One row per agent or per period.",
    )
    @click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
    @click.option("--csv", "as_csv", is_flag=True, help="CSV on standard output.")
    @click.pass_obj
    def report(
        app: Any, since: datetime | None, until: datetime | None, by: GroupBy, as_json: bool, as_csv: bool
    ) -> None:
        """Response rate (target: [plugins.survey] target_response_rate, 80 %) and average answers."""
        from contactcenter_survey import NAME, options

        api = app.plugins.api_for(NAME)
        target = options(api).target_response_rate
        surveys = surveys_between(api, since.date() if since else None, until.date() if until else None)
        groups = survey_groups(surveys, api.timezone, by)
        rows, columns = report_rows(groups, target)
        fmt: Format = "json" if as_json else "csv" if as_csv else "table"
        emit_rows(rows, columns, fmt, title=f"satisfaction surveys (target response rate {target:.0%})")
        if fmt == "table" and not rows:
            click.echo("no surveys in this period")
