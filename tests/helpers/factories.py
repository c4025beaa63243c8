"""Records as the telephony and speech layers will hand them to plugins; test plugins installed on a path;
an App opened on a test desk."""

from __future__ import annotations

import inspect
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contactcenter.hooks import spec as hookspecs
from contactcenter.records import (
    CallbackRecord,
    CallRecord,
    ComplianceReport,
    RuleHitRecord,
    RuleResult,
    SurveyRecord,
    TicketRecord,
    UtteranceRecord,
    WrapUpRecord,
)
from tests.helpers.settings import desk_environment

SHANGHAI = ZoneInfo("Asia/Shanghai")
INVITED = datetime(2026, 11, 23, 10, 0, 0, tzinfo=SHANGHAI)


def a_call(**changes: Any) -> CallRecord:
    values = dict(
        id=None,
        sip_call_id="call-1@127.0.0.1",
        remote_number="13800138000",
        caller_name="李先生",
        agent_extension="1001",
        invited_at=INVITED,
        ringing_at=INVITED + timedelta(milliseconds=6),
        answered_at=INVITED + timedelta(seconds=9),
        ended_at=INVITED + timedelta(minutes=4),
        rings_before_answer=2,
        hung_up_first="customer",
        disposition="completed",
    )
    values.update(changes)
    return CallRecord(**values)


def transcript(*customer_lines: str) -> list[UtteranceRecord]:
    lines = [UtteranceRecord(leg="agent", start_s=0.5, end_s=3.0, text="您好,示例科技,很高兴为您服务", confidence=0.9)]
    start = 3.5
    for text in customer_lines:
        lines.append(UtteranceRecord(leg="customer", start_s=start, end_s=start + 2.5, text=text, confidence=0.8))
        start += 4
    return lines


def a_report(score: float = 100.0, failed: tuple[tuple[str, str], ...] = ()) -> ComplianceReport:
    results = [
        RuleResult(
            rule_id="greeting",
            passed=True,
            evidence=(RuleHitRecord(rule_id="greeting", kind="satisfied", leg="agent", at_s=0.5, matched_text="您好"),),
        )
    ]
    results += [RuleResult(rule_id=rule, passed=False, severity=severity) for rule, severity in failed]
    return ComplianceReport(score=score, results=tuple(results))


def event_arguments(hook: str) -> dict[str, Any]:
    """Plausible arguments for every event hook."""
    call = a_call(id=7)
    return {
        "call_ringing": {"call": a_call(answered_at=None, ended_at=None, disposition="in_progress")},
        "call_answered": {"call": a_call(ended_at=None, disposition="in_progress")},
        "utterance": {"call": call, "utterance": transcript("我想问一下账单")[1]},
        "rule_hit": {
            "call": call,
            "hit": RuleHitRecord(
                rule_id="banned",
                kind="violation",
                severity="critical",
                leg="agent",
                at_s=12.0,
                matched_text="我不知道",
                live=True,
            ),
        },
        "call_ended": {
            "call": call,
            "transcript": transcript("我要投诉"),
            "report": a_report(80, (("closing", "major"),)),
        },
        "call_wrapped_up": {
            "call": call.model_copy(update={"purpose": "空调不制冷", "category": "报修"}),
            "wrap_up": WrapUpRecord(
                call_id=7,
                sip_call_id=call.sip_call_id,
                agent_extension="1001",
                caller_name="张伟",
                phone="13800138000",
                salutation="先生",
                customer_id=3,
                category="报修",
                purpose="空调不制冷",
                notes="型号 KFR-35GW",
                callbacks=(
                    CallbackRecord(
                        id=9, phone="13800138000", kind="next_day", due_at=INVITED + timedelta(days=1), call_id=7
                    ),
                ),
                wrapped_up_at=INVITED + timedelta(minutes=6),
                wrapped_up_by="1001",
            ),
        },
        "ticket_created": {"ticket": TicketRecord(id=3, call_id=7, category="投诉", created_at=INVITED)},
        "callback_due": {
            "callback": CallbackRecord(id=5, phone="13800138000", reason="次日回访", due_at=INVITED + timedelta(days=1))
        },
        "desk_started": {"role": "desk"},
        "callback_closed": {
            "callback": CallbackRecord(
                id=5,
                phone="13800138000",
                reason="次日回访",
                state="done",
                due_at=INVITED + timedelta(days=1),
                attempts=1,
                last_outcome="answered",
            )
        },
        "survey_completed": {
            "survey": SurveyRecord(
                call_id=7, agent_extension="1001", answers={"satisfaction": 5, "speed": None}, completed=False
            )
        },
    }[hook]


# A plugin that records every event hook call it gets, as (hook, arguments) in CALLS.
RECORDER = "from contactcenter import hookimpl\nCALLS = []\n" + "".join(
    f"\n@hookimpl\ndef {hook}({', '.join(p for p in inspect.signature(getattr(hookspecs, hook)).parameters)}):\n"
    f"    CALLS.append(({hook!r}, dict({', '.join(f'{p}={p}' for p in inspect.signature(getattr(hookspecs, hook)).parameters)})))\n"
    for hook in hookspecs.EVENT_HOOKS
)


def install_plugin(site: Path, name: str, source: str) -> str:
    """Install a plugin distribution whose entry point ``name`` is a module with ``source``."""
    module = f"cc_test_{name}_{uuid.uuid4().hex[:8]}"
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[contactcenter]\n{name} = {module}\n", encoding="utf-8")
    return module


def open_app(desk: Path, database_url: str, monkeypatch: Any, **overrides: str) -> Any:
    """An App on the desk folder and database, with ``section__key=value`` settings overrides, upgraded."""
    from contactcenter.app import App

    for key, value in desk_environment(database_url, **overrides).items():
        monkeypatch.setenv(key, value)
    app = App(desk)
    app.database.upgrade()
    return app


KNOWN_CALLER = "13800138000"  # the From of the demo caller and uac_call.xml


def seed_known_caller(database: Any) -> int:
    """张三 (张先生) of 示例公司, stored with the number written 138-0013-8000, who called about a repair ten
    days ago: what the agent desktop's screen-pop should find for a call from ``KNOWN_CALLER``. Their id."""
    from contactcenter.phones import phone_key
    from contactcenter.storage.models import Call, Customer

    with database.session() as session:
        customer = Customer(
            name="张三", company="示例公司", phone="138-0013-8000", phone_key=phone_key(KNOWN_CALLER), salutation="先生"
        )
        session.add(customer)
        session.flush()
        before = datetime.now(UTC) - timedelta(days=10)
        session.add(
            Call(
                sip_call_id="earlier-call",
                direction="inbound",
                remote_number=KNOWN_CALLER,
                customer_id=customer.id,
                invited_at=before,
                answered_at=before,
                ended_at=before + timedelta(minutes=3),
                disposition="completed",
                category="报修",
                compliance_score=92.5,
            )
        )
        return int(customer.id)
