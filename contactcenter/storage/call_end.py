"""What happens when a call ends: the call and its speech findings are stored, then ``call_ended`` is
published with the stored call. If the database cannot take it, the call is kept in a spool file (and
still published) so nothing is lost; ``import_spooled_calls`` stores it later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import TypeAdapter
from sqlalchemy.exc import SQLAlchemyError

from contactcenter.records import CallRecord, CallSpeechOutcome, ComplianceReport, RuleHitRecord, UtteranceRecord
from contactcenter.storage.calls import save_call
from contactcenter.storage.database import Database

log = logging.getLogger(__name__)

SPOOL_NAME = "calls.jsonl"
_OUTCOME = TypeAdapter(tuple[CallRecord, list[UtteranceRecord], list[RuleHitRecord], ComplianceReport])


def end_call(
    call: CallRecord,
    outcome: CallSpeechOutcome,
    database: Database | None,
    spool_dir: Path,
    publish: Callable[..., None] | None,
) -> CallRecord:
    """Store the finished call (or spool it), publish ``call_ended``; the call record with its store id."""
    stored = call
    if database is not None:
        try:
            with database.session() as session:
                stored = call.model_copy(
                    update={"id": save_call(session, call, outcome.transcript, outcome.hits, outcome.report)}
                )
        except SQLAlchemyError as exc:
            log.error("call %s could not be stored (%s); kept in %s", call.sip_call_id, exc, spool_dir / SPOOL_NAME)
            _spool(spool_dir, call, outcome)
    else:
        _spool(spool_dir, call, outcome)
    if publish is not None:
        publish("call_ended", call=stored, transcript=outcome.transcript, report=outcome.report)
    return stored


def _spool(spool_dir: Path, call: CallRecord, outcome: CallSpeechOutcome) -> None:
    spool_dir.mkdir(parents=True, exist_ok=True)
    entry = _OUTCOME.dump_python((call, outcome.transcript, outcome.hits, outcome.report), mode="json")
    with (spool_dir / SPOOL_NAME).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def import_spooled_calls(database: Database, spool_dir: Path) -> int:
    """Store the calls kept while the database was down; returns how many."""
    spool = spool_dir / SPOOL_NAME
    if not spool.exists():
        return 0
    entries = [
        _OUTCOME.validate_python(json.loads(line))
        for line in spool.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    with database.session() as session:
        for call, transcript, hits, report in entries:
            save_call(session, call, transcript, hits, report)
    spool.unlink()
    return len(entries)
