"""The desk's own plugin that turns calls and tickets into callbacks, by the rules in ``[callbacks]``.

Registered by every desk process under the name ``callbacks`` (``hooks.host.BUILT_IN_PLUGINS``), so it gets
the same isolation, time limit and replay as any installed plugin; a replayed event finds the callback it
already made (one per call and kind).

- a ticket in ``service_categories`` (报修): 次日回访, the next working day at ``next_day_time``;
- a ticket in ``complaint_categories`` (投诉): as soon as the desk is open, promised within
  ``complaint_within_hours``;
- with ``after_failed_compliance``: a call that failed a critical rule, the next working day, for a
  supervisor's follow-up.

The first two are guesses from the category the machine gave the call. Once the agent has wrapped the call
up (``contactcenter.wrap_up``), the wrap-up decides its next-day and complaint callbacks: it takes over or
cancels what was made here, and a ticket event that arrives later (a replay, a slow worker, another
process) makes none for that call (``api.add_callback_unless_wrapped_up``).
"""

from __future__ import annotations

from datetime import datetime

from contactcenter import hookimpl
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import (
    CallRecord,
    ComplianceReport,
    TicketRecord,
    UtteranceRecord,
)

NAME = "callbacks"


def _calendar(api: PluginAPI) -> WorkCalendar:
    return WorkCalendar(api.settings.callbacks, api.settings.general.timezone)


def _promise(
    api: PluginAPI, ticket: TicketRecord, kind: str, due: datetime, deadline: datetime | None, reason: str
) -> None:
    """A callback for the ticket; for a call's ticket, only while the call is not wrapped up."""
    if ticket.call_id is None:
        api.add_callback(
            phone=ticket.caller_phone, due_at=due, deadline_at=deadline, kind=kind, reason=reason, ticket_id=ticket.id
        )
        return
    api.add_callback_unless_wrapped_up(
        call_id=ticket.call_id,
        phone=ticket.caller_phone,
        due_at=due,
        deadline_at=deadline,
        kind=kind,
        reason=reason,
        ticket_id=ticket.id,
    )


@hookimpl
def ticket_created(ticket: TicketRecord, api: PluginAPI) -> None:
    policy = api.settings.callbacks
    if not ticket.caller_phone:
        return
    created = ticket.created_at or api.now()
    calendar = _calendar(api)
    if policy.after_complaint and ticket.category in policy.complaint_categories:
        due, deadline = calendar.complaint_callback(created, policy.complaint_within_hours)
        _promise(api, ticket, "complaint", due, deadline, f"投诉回访 工单{ticket.id}")
    elif policy.after_service_call and ticket.category in policy.service_categories:
        _promise(api, ticket, "next_day", calendar.next_day_callback(created), None, f"次日回访 工单{ticket.id}")


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    policy = api.settings.callbacks
    critical = [r.rule_id for r in report.failed if r.severity == "critical"]
    if call.direction != "inbound":
        return  # a callback's own call never schedules another callback: no loop of calls to one customer
    if not (policy.after_failed_compliance and critical and call.remote_number and call.ended_at):
        return
    api.add_callback(
        phone=call.remote_number,
        due_at=_calendar(api).next_day_callback(call.ended_at),
        kind="compliance",
        reason="质检回访: " + ", ".join(critical),
        call_id=call.id,
    )
