"""contactcenter plugin: satisfaction surveys by phone (满意度电话调查, R11), answered with keys 1-5.

After a completed call the plugin promises a survey callback (kind ``survey``, ``delay_minutes`` later,
within working hours). When it comes due in a desk process with a phone (``contactcenter run`` with
``[callbacks] scheduler_in_desk = true``) the plugin dials the customer, plays the questions of
``scripts_zh/survey.toml`` and stores the answers (``survey_responses``); busy or no answer is retried per
the callback policy. ``contactcenter survey report`` gives the response rate against the 80 % target and
the average per question, per agent and per period.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict, Field

from contactcenter import hookimpl
from contactcenter.audio.prompts import Prompts
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.hooks.api import PluginAPI
from contactcenter.records import (
    CallbackRecord,
    CallRecord,
    ComplianceReport,
    UtteranceRecord,
)
from contactcenter_survey.ivr import SurveyRun, SurveyScript
from contactcenter_survey.report import register_report_command

NAME = "survey"
log = logging.getLogger(__name__)


class SurveyOptions(BaseModel):
    """``[plugins.survey]`` in settings.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    script: str = "scripts_zh/survey.toml"  # relative to settings.toml
    after_calls: bool = True  # a survey callback after every completed inbound call
    delay_minutes: float = Field(default=10.0, ge=0)
    dial_timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    target_response_rate: float = Field(default=0.8, gt=0, le=1)


def options(api: PluginAPI) -> SurveyOptions:
    return api.options if isinstance(api.options, SurveyOptions) else SurveyOptions.model_validate(api.options or {})


def script_path(api: PluginAPI) -> Path:
    path = Path(options(api).script)
    return path if path.is_absolute() else Path(api.settings.source).resolve().parent / path


@hookimpl
def register_settings() -> type[BaseModel]:
    return SurveyOptions


@hookimpl
def register_commands(cli: click.Group) -> None:
    register_report_command(cli)


@hookimpl
def call_ended(call: CallRecord, transcript: list[UtteranceRecord], report: ComplianceReport, api: PluginAPI) -> None:
    opts = options(api)
    if not (
        opts.after_calls
        and call.disposition == "completed"
        and call.direction == "inbound"
        and call.remote_number
        and call.ended_at
    ):
        return
    calendar = WorkCalendar(api.settings.callbacks, api.settings.general.timezone)
    due = calendar.next_working_moment(call.ended_at + timedelta(minutes=opts.delay_minutes))
    api.add_callback(phone=call.remote_number, due_at=due, kind="survey", reason="满意度调查", call_id=call.id)


@hookimpl
def callback_due(callback: CallbackRecord, api: PluginAPI) -> None:
    if callback.kind != "survey":
        return
    if not api.has_phone:
        log.info(
            "survey callback %s is due, but this process has no phone: it waits for a desk with "
            "[callbacks] scheduler_in_desk = true",
            callback.id,
        )
        return
    threading.Thread(target=_survey_thread, args=(callback, api), name=f"survey-{callback.id}", daemon=True).start()


def _survey_thread(callback: CallbackRecord, api: PluginAPI) -> None:
    try:
        survey_call(callback, api)
    except Exception:  # the callback stays due: `callbacks list` shows it, an agent can take it
        log.exception("survey call for callback %s failed", callback.id)


def survey_call(callback: CallbackRecord, api: PluginAPI) -> None:
    """Dial, ask, store; a missed call goes back to the callback policy (retry, then failed)."""
    opts = options(api)
    try:
        script = SurveyScript.load(script_path(api))
    except Exception as exc:
        log.error("survey script %s cannot be used: %s", script_path(api), exc)
        return
    result = api.dial(callback.phone, timeout=opts.dial_timeout_seconds)
    if result.line is None:
        api.close_callback(callback.id, result.outcome)
        return
    line = result.line
    try:
        run = SurveyRun(line, script, Prompts(api.settings.scripts.prompts_dir)).run()
    finally:
        line.hangup()
    answers = [(a.question, a.value, a.outcome) for a in run.answers]
    api.record_survey(callback.call_id, answers, callback_id=callback.id)
    outcome = "answered" if run.responded else "no_response"
    api.close_callback(
        callback.id, outcome, note="; ".join(f"{a.question}={a.value or a.outcome}" for a in run.answers)
    )
