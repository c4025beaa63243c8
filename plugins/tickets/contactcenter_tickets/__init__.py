"""contactcenter plugin: every ended call becomes a ticket (工单), filled with the agent's words when the
agent wraps the call up (话后处理).

Until then the ticket holds the machine's guesses (a category from keywords, the caller's first words as the
purpose) and is marked not wrapped up (``wrapped_up`` false, "未话后处理" in ``contactcenter tickets list``);
a call nobody wraps up keeps it that way, so the list shows which tickets no person has looked at.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from contactcenter import hookimpl
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import UNCHECKED_REASONS, CallRecord, ComplianceReport, UtteranceRecord, WrapUpRecord


class TicketOptions(BaseModel):
    """``[plugins.tickets]`` in settings.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_category: str = Field(default="general", min_length=1)
    category_keywords: dict[str, list[str]] = Field(default_factory=dict)
    due_hours: dict[str, float] = Field(default_factory=dict)
    high_priority_categories: list[str] = Field(default_factory=list)
    escalate_on_critical: bool = True
    compliance_summary_template: str = "{score:.0f}/100; {failed}"
    #: a call nobody could check gets no score: it says so, and why (never "100/100")
    compliance_unchecked_template: str = "未检查:{reason}"
    #: added when the recogniser missed part of the call (overloaded): the score covers only what it heard
    compliance_partly_template: str = "(部分检查:{dropped:.0f} 秒音频未识别)"
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
    """The verdict in a line: the score and failed rules, or that the call was not (or only partly) checked."""
    if report.score is None:
        reason = UNCHECKED_REASONS.get(report.unchecked_reason, report.unchecked_reason)
        return options.compliance_unchecked_template.format(reason=reason)
    failed = ", ".join(f"{r.rule_id}({r.severity})" for r in report.failed) or "-"
    summary = options.compliance_summary_template.format(score=report.score, failed=failed)
    if report.dropped_seconds > 0:
        summary += options.compliance_partly_template.format(dropped=report.dropped_seconds)
    return summary


@hookimpl
def register_settings() -> type[BaseModel]:
    return TicketOptions


def priority_of(category: str, options: TicketOptions) -> str:
    return "high" if category in options.high_priority_categories else "normal"


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    """Make the call's ticket (once: a replayed event finds the ticket already there). Calls the desk placed
    (callbacks, surveys) follow up a case that already has its ticket: they get none.

    When the agent's wrap-up came first (``call_wrapped_up`` made the ticket), the ticket keeps what the
    agent typed and gets only what this event alone knows: the compliance summary and escalation."""
    if call.direction != "inbound" or call.id is None:
        return
    options: TicketOptions = api.options
    critical_failed = any(r.severity == "critical" for r in report.failed)
    existing = api.find_ticket(call.id)
    if existing is not None:
        if not existing.compliance_summary:  # made by the wrap-up; a ticket made here always has one
            api.update_ticket(
                call.id,
                compliance_summary=compliance_summary(report, options),
                escalated=existing.escalated or (options.escalate_on_critical and critical_failed),
            )
        return
    category = classify(call, transcript, options)
    opened = call.ended_at or api.now()
    hours = options.due_hours.get(category)
    purpose = purpose_of(call, transcript, options.summary_max_chars)
    api.create_ticket(
        call_id=call.id,
        caller_name=call.caller_name,
        caller_phone=call.remote_number,
        category=category,
        purpose=purpose,
        summary=f"{call.direction} {call.disposition}: {purpose}",
        compliance_summary=compliance_summary(report, options),
        priority=priority_of(category, options),
        due_at=opened + timedelta(hours=hours) if hours is not None else None,
        escalated=options.escalate_on_critical and critical_failed,
        wrapped_up=False,
    )


@hookimpl
def call_wrapped_up(call: CallRecord, wrap_up: WrapUpRecord, api: PluginAPI) -> None:
    """Fill the call's ticket with what the agent typed and mark it wrapped up; priority and due time follow
    the agent's category as they follow the guessed one. Made now if ``call_ended`` has not made it yet (it
    then finds it). Saved again, the same ticket is updated: ``ticket_created`` is published only when a
    ticket is made. Calls the desk placed get no ticket, as in ``call_ended``."""
    if call.direction != "inbound" or call.id is None:
        return
    options: TicketOptions = api.options
    opened = call.ended_at or wrap_up.wrapped_up_at
    hours = options.due_hours.get(wrap_up.category)
    fields = dict(
        customer_id=wrap_up.customer_id,
        caller_name=wrap_up.caller_name,
        caller_phone=wrap_up.phone or call.remote_number,
        category=wrap_up.category,
        purpose=wrap_up.purpose,
        summary=wrap_up.notes or wrap_up.purpose,
        resolution=wrap_up.resolution,
        wrapped_up=True,
        priority=priority_of(wrap_up.category, options),
        due_at=opened + timedelta(hours=hours) if hours is not None else None,
    )
    if api.update_ticket(call.id, **fields) is not None:
        return
    api.create_ticket(call_id=call.id, **fields)
    # If call_ended made the ticket in another process at this very moment, create_ticket returned that one,
    # with the machine's guesses: fill it. (Same values again otherwise; cheaper than telling them apart.)
    api.update_ticket(call.id, **fields)
