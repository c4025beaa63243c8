"""The plugin contract: every hook contactcenter calls, when, with what, and what it expects back.

A plugin is a module (or object) with functions named after these hooks and marked with
``@contactcenter.hookimpl``. It may accept any subset of a hook's arguments, by name, as with pytest.
Plugins are found through the entry-point group ``contactcenter`` and run only when their entry-point name
is listed in ``settings.toml`` ``[plugins] enabled`` (``contactcenter plugins enable NAME``).

Event hooks (``desk_started`` … ``survey_completed``) are delivered to each plugin by its own worker, in
the order they happened, with a time limit per call (``[plugins] hook_timeout_seconds``); a slow plugin
delays nobody else. A plugin that raises or overruns is logged with its name; the call goes on, the other
plugins still get the event, and the event is stored as undelivered so ``contactcenter plugins replay``
can hand it over again later. Event hooks may therefore be called more than once for the same event: make
them idempotent (the ticket plugin, for one, looks for its ticket first). Event hook return values are
ignored.

Every event hook can take ``api``, the :class:`contactcenter.hooks.api.PluginAPI`: the plugin's options,
the settings, and the typed operations a plugin may call back into the desk with (tickets, callbacks,
the outbox, placing a call, ...).

This module is the bottom of the ``contactcenter.hooks`` package: it imports only the records, so that
``from contactcenter import hookimpl`` stays cheap. ``PluginAPI`` is named for type checkers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import pluggy
from pydantic import BaseModel

from contactcenter.records import (
    CallbackRecord,
    CallRecord,
    ComplianceReport,
    RuleHitRecord,
    SurveyRecord,
    TicketRecord,
    UtteranceRecord,
    WrapUpRecord,
)

if TYPE_CHECKING:
    from contactcenter.hooks.api import PluginAPI

PROJECT_NAME = "contactcenter"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Hooks that report something that happened; they are dispatched with isolation and replay.
EVENT_HOOKS = (
    "desk_started",
    "call_ringing",
    "call_answered",
    "utterance",
    "rule_hit",
    "call_ended",
    "call_wrapped_up",
    "ticket_created",
    "callback_closed",
    "callback_due",
    "survey_completed",
)

#: Hooks a command calls synchronously and whose answer it uses (not events: no worker, no replay).
REQUEST_HOOKS = ("forget_customer",)


# -------------------------------------------------------------------------------------------------------
# Registration hooks: called once at start-up, synchronously.
# -------------------------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``contactcenter`` command line.

    Called once when the CLI is built, for enabled plugins only.

    :param cli: the top-level ``click.Group``; add commands with ``@cli.command()`` or ``cli.add_command``.

    Return value: ignored.
    """


@hookspec
def register_settings() -> type[BaseModel] | None:
    """Declare the plugin's own settings section, ``[plugins.<name>]`` in settings.toml.

    Called once when plugins are loaded. The table is validated against the returned pydantic model (unknown
    keys and wrong types are reported like any other settings error), and the validated instance is what
    ``api.options`` returns to the plugin.

    Return value: a pydantic ``BaseModel`` subclass whose fields all have defaults, or None for no settings.
    """


# -------------------------------------------------------------------------------------------------------
# Event hooks: called as things happen, one worker per plugin, time-limited, replayable.
# -------------------------------------------------------------------------------------------------------


@hookspec
def desk_started(role: str, api: PluginAPI) -> None:
    """A long-running desk process has started: ``run`` (role ``"desk"``) or ``scheduler``
    (role ``"scheduler"``).

    :param role: which process.
    :param api: the plugin API.

    Start background work here (delivering a persistent outbox left from before a restart); short-lived
    commands (``tickets list``) never call it.
    """


@hookspec
def call_ringing(call: CallRecord, api: PluginAPI) -> None:
    """An inbound call has arrived and is ringing (180 Ringing sent), or an outbound call is ringing.

    :param call: the call so far: caller number, ``invited_at`` and ``ringing_at``; not yet answered.
    :param api: the plugin API.

    Use it for screen pops: look the caller up in a CRM before the agent speaks.
    """


@hookspec
def call_answered(call: CallRecord, api: PluginAPI) -> None:
    """The call has been answered; ``call.rings_before_answer`` says how many rings it took (R1).

    :param call: the call with ``answered_at`` and ``rings_before_answer`` set.
    :param api: the plugin API.
    """


@hookspec
def utterance(call: CallRecord, utterance: UtteranceRecord, api: PluginAPI) -> None:
    """The recogniser finished a segment of speech on one leg of a live call.

    :param call: the call in progress.
    :param utterance: the leg (agent or customer), its start and end in seconds from the answer, the text
        (phone and ID numbers masked when ``[speech] redact_numbers`` is on) and the confidence.
    :param api: the plugin API.

    Called often (every few seconds per leg): keep it quick, hand slow work to your own queue.
    """


@hookspec
def rule_hit(call: CallRecord, hit: RuleHitRecord, api: PluginAPI) -> None:
    """A compliance rule fired during a live call.

    :param call: the call in progress.
    :param hit: what fired: ``kind`` is ``violation`` (a banned phrase was said), ``satisfied`` (a required
        phrase was said) or ``missing`` (a required phrase's window closed without it); with the rule id,
        severity, leg, time and the matched text.
    :param api: the plugin API.

    Use it for live alerts to a supervisor.
    """


@hookspec
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    """A call is over and stored: the full record, its transcript and its compliance report.

    :param call: the finished call: ``ended_at``, ``disposition`` (answered calls end ``completed``; others
        ``abandoned``, ``busy``, ``no_answer`` or ``failed``) and ``hung_up_first``.
    :param transcript: every utterance of both legs in time order.
    :param report: every rule's verdict, with evidence, and the score out of 100. ``report.score`` is
        ``None`` when the call could not be checked (no speech model, no speech recognised, recognition
        failed, nobody answered; ``report.unchecked_reason`` says which): treat it as *not checked*, never as
        100. ``report.check`` is ``checked``, ``partly_checked`` (the recogniser missed
        ``report.dropped_seconds`` of audio) or ``not_checked``.
    :param api: the plugin API.

    This is where a call becomes a ticket, a CRM record or a survey invitation.
    """


@hookspec
def call_wrapped_up(call: CallRecord, wrap_up: WrapUpRecord, api: PluginAPI) -> None:
    """The agent saved the wrap-up (话后处理) of a stored call: what the call was about, in their words.

    Published by the process where the agent saved it (the desk, ``contactcenter run``, which serves the
    agent's desktop), once the wrap-up is committed: the call, the customer record and the callbacks it
    promised are already in the database. Published again each time the agent corrects the wrap-up
    (``wrap_up.corrected`` is then true): update what you made the first time rather than add to it.

    :param call: the call as stored after the wrap-up: ``purpose`` and ``category`` are the agent's,
        ``caller_name`` the name the agent typed.
    :param wrap_up: everything typed (caller name, company, phone, salutation, category, purpose, notes,
        resolution, complaint) with the customer it was filed under, the callbacks it promised (次日回访,
        complaint follow-up), the automatic ones it cancelled and the callback it closed, if the call was a
        callback; when and by which agent.
    :param api: the plugin API.

    Use it to put the agent's words where the machine's guesses were: the ticket (the ticket plugin fills
    the call's ticket with it), the CRM. Ordering: a plugin gets the events one process publishes in the
    order they were published, so from the desk that took the call ``call_ended`` comes before
    ``call_wrapped_up``. Do not rely on it: a ``call_ended`` the plugin failed to take is replayed later,
    and a wrap-up saved in another process is published there; handle ``call_wrapped_up`` for a call whose
    ``call_ended`` you have not seen yet (and the late ``call_ended`` after it).
    """


@hookspec
def ticket_created(ticket: TicketRecord, api: PluginAPI) -> None:
    """A ticket (工单) was created, by a plugin through ``api.create_ticket`` or by hand.

    :param ticket: the stored ticket, with its id, category, priority and due time.
    :param api: the plugin API.
    """


@hookspec
def callback_due(callback: CallbackRecord, api: PluginAPI) -> None:
    """A callback (次日回访, complaint follow-up) has come due.

    :param callback: the callback: phone, reason, owner, attempts so far.
    :param api: the plugin API.

    Use it to remind the owner (chat, e-mail) or to place the call: ``api.dial`` in a process with a phone
    (``api.has_phone``), from a thread of your own, then ``api.close_callback`` with the outcome.
    """


@hookspec
def callback_closed(callback: CallbackRecord, api: PluginAPI) -> None:
    """A callback is closed: ``done`` (the customer was reached) or ``failed`` (attempts used up).

    :param callback: the callback with its final ``state``, ``attempts``, ``last_outcome`` and ``note``.
    :param api: the plugin API.

    Use it to close the loop elsewhere: mark the CRM case followed up, tell the complaint's owner.
    """


@hookspec
def survey_completed(survey: SurveyRecord, api: PluginAPI) -> None:
    """A satisfaction survey ended, answered in full or in part.

    :param survey: the answer (1-5, or None) to each question, and whether every question was answered.
    :param api: the plugin API.
    """


# -------------------------------------------------------------------------------------------------------
# Request hooks: called synchronously by a command, for every enabled plugin that implements them.
# -------------------------------------------------------------------------------------------------------


@hookspec
def forget_customer(phone: str, phone_key: str, api: PluginAPI) -> str | None:
    """Erase what the plugin itself holds about the customer with this number (an erasure request, PIPL
    art. 47), or pass the request on to the system it feeds.

    Called by ``contactcenter customers forget PHONE`` after the desk's own data is erased and committed
    (calls, transcripts, recordings, tickets, callbacks, survey links, the plugin outbox: see
    :mod:`contactcenter.storage.erasure`), so a message the plugin queues now survives. Not called on
    ``--dry-run``.

    :param phone: the number as the admin typed it.
    :param phone_key: the number's lookup key (:func:`contactcenter.phones.phone_key`, ``13800138000``): the
        same key matches every spelling, so compare keys, not strings.
    :param api: the plugin API.

    Return value: one line saying what the plugin did ("told the CRM: message 12 queued"), printed by the
    command; None if it held nothing. Raise to report a failure: the command prints it and exits non-zero,
    since the request is then not fully carried out.
    """
