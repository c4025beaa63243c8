"""contactcenter plugin: every ended call becomes a ticket (工单)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from contactcenter import hookimpl
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import CallRecord, ComplianceReport, UtteranceRecord


class TicketOptions(BaseModel):
    """``[plugins.tickets]`` in settings.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_category: str = Field(default="general", min_length=1)
    category_keywords: dict[str, list[str]] = Field(default_factory=dict)
    due_hours: dict[str, float] = Field(default_factory=dict)
    high_priority_categories: list[str] = Field(default_factory=list)
    escalate_on_critical: bool = True
    compliance_summary_template: str = "{score:.0f}/100; {failed}"
    summary_max_chars: int = Field(default=200, ge=20)


def classify(call: CallRecord, transcript: list[UtteranceRecord], options: TicketOptions) -> str:
    """The agent's category if set, else the first category whose keyword the customer said."""
    if call.category:
        return call.category
    said = "".join(u.text for u in transcript if u.leg == "customer").replace(" ", "")
    for category, keywords in options.category_keywords.items():
        if any(keyword in said for keyword in keywords):
            return category
    return options.default_category


def purpose_of(call: CallRecord, transcript: list[UtteranceRecord], limit: int) -> str:
    """What the caller wanted: the purpose the agent recorded, else the caller's first words."""
    if call.purpose:
        return call.purpose
    words = " ".join(u.text for u in transcript if u.leg == "customer").strip()
    return words[:limit]


def compliance_summary(report: ComplianceReport, options: TicketOptions) -> str:
    failed = ", ".join(f"{r.rule_id}({r.severity})" for r in report.failed) or "-"
    return options.compliance_summary_template.format(score=report.score, failed=failed)


@hookimpl
def register_settings() -> type[BaseModel]:
    return TicketOptions


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    """Make the call's ticket (once: a replayed event finds the ticket already there). Calls the desk placed
    (callbacks, surveys) follow up a case that already has its ticket: they get none."""
    if call.direction != "inbound" or call.id is None or api.find_ticket(call.id) is not None:
        return
    options: TicketOptions = api.options
    category = classify(call, transcript, options)
    opened = call.ended_at or api.now()
    hours = options.due_hours.get(category)
    critical_failed = any(r.severity == "critical" for r in report.failed)
    purpose = purpose_of(call, transcript, options.summary_max_chars)
    api.create_ticket(
        call_id=call.id,
        caller_name=call.caller_name,
        caller_phone=call.remote_number,
        category=category,
        purpose=purpose,
        summary=f"{call.direction} {call.disposition}: {purpose}",
        compliance_summary=compliance_summary(report, options),
        priority="high" if category in options.high_priority_categories else "normal",
        due_at=opened + timedelta(hours=hours) if hours is not None else None,
        escalated=options.escalate_on_critical and critical_failed,
    )
