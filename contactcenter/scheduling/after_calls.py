"""The desk's own plugin that turns calls and tickets into callbacks, by the rules in ``[callbacks]``.

Registered by every desk process under the name ``callbacks`` (``hooks.host.BUILT_IN_PLUGINS``), so it gets
the same isolation, time limit and replay as any installed plugin; a replayed event finds the callback it
already made (one per call and kind).

- a ticket in ``service_categories`` (报修): 次日回访, the next working day at ``next_day_time``;
- a ticket in ``complaint_categories`` (投诉): as soon as the desk is open, promised within
  ``complaint_within_hours``;
- with ``after_failed_compliance``: a call that failed a critical rule, the next working day, for a
  supervisor's follow-up.
"""

from __future__ import annotations

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


@hookimpl
def ticket_created(ticket: TicketRecord, api: PluginAPI) -> None:
    policy = api.settings.callbacks
    if not ticket.caller_phone:
        return
    created = ticket.created_at or api.now()
    calendar = _calendar(api)
    if policy.after_complaint and ticket.category in policy.complaint_categories:
        due, deadline = calendar.complaint_callback(created, policy.complaint_within_hours)
        api.add_callback(
            phone=ticket.caller_phone,
            due_at=due,
            deadline_at=deadline,
            kind="complaint",
            reason=f"投诉回访 工单{ticket.id}",
            call_id=ticket.call_id,
            ticket_id=ticket.id,
        )
    elif policy.after_service_call and ticket.category in policy.service_categories:
        api.add_callback(
            phone=ticket.caller_phone,
            due_at=calendar.next_day_callback(created),
            kind="next_day",
            reason=f"次日回访 工单{ticket.id}",
            call_id=ticket.call_id,
            ticket_id=ticket.id,
        )


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
