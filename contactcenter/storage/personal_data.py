"""Removing a call's personal data: its recording, its transcript, and the fields that name the caller.

The shared part of the retention purge (:mod:`contactcenter.storage.retention`) and of an erasure request
(:mod:`contactcenter.storage.erasure`). What stays is what a QA team counts: the call's times, agent,
direction, disposition, category, complaint flag, score, verdict state and each finding's rule, kind, leg
and time; only the words a finding quoted go. The call records what was removed and why
(``Call.data_removed``), so the console says "deleted" rather than "missing".

A recording file is deleted before its row forgets it: if the database then fails, the row still names a
file that is gone and the next run clears it, whereas the other order could leave a recording on disk that
nothing points to any more. Files outside ``[general] data_dir`` are never touched.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from contactcenter.storage.database import rows_changed
from contactcenter.storage.models import DATA_PARTS, REMOVAL_REASONS, Call, RuleHit, Utterance

log = logging.getLogger(__name__)

#: What a purge or an erasure counts, in the order it is shown, with what each count is.
COUNT_LABELS: dict[str, str] = {
    "recordings": "recordings deleted",
    "recording_bytes": "bytes of recordings freed",
    "recordings_failed": "recordings that could not be deleted (see the log; tried again next time)",
    "orphan_recordings": "recording files no call refers to, deleted",
    "transcript_calls": "calls whose transcript was removed",
    "utterances": "transcript lines deleted",
    "quoted_findings": "findings whose quoted words were removed (the finding stays)",
    "personal_calls": "calls whose number, purpose and notes were removed",
    "team_calls": "team-line calls whose number was removed",
    "tickets": "tickets whose caller details were removed",
    "callbacks": "callbacks whose number and reason were removed",
    "callbacks_cancelled": "pending callbacks cancelled",
    "survey_answers": "survey answers unlinked from the call (the score stays)",
    "customers": "customer records deleted",
    "customer_changes": "customer change-history entries deleted",
    "outbox_messages": "plugin outbox messages deleted",
    "undelivered_events": "undelivered plugin events deleted",
    "live_events": "live-view events deleted",
    "texts": "other texts the number was removed from",
}


#: What an anonymised ticket and callback keep empty: everything that names or reaches the caller.
TICKET_PERSONAL = {
    "caller_name": "",
    "caller_phone": "",
    "purpose": "",
    "summary": "",
    "resolution": "",
    "escalation_note": "",
    "customer_id": None,
}
CALLBACK_PERSONAL = {"phone": "", "reason": "", "note": "", "customer_id": None}


@dataclass
class Tally:
    """How many of each thing (``COUNT_LABELS``) a removal changed, or would change in a dry run."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, how_many: int = 1) -> None:
        if what not in COUNT_LABELS:
            raise KeyError(f"{what!r} is not a count of COUNT_LABELS")
        if how_many:
            self.counts[what] += how_many

    def as_dict(self) -> dict[str, int]:
        """Every count, zeros too, in ``COUNT_LABELS`` order."""
        return {what: int(self.counts[what]) for what in COUNT_LABELS}

    @property
    def changed(self) -> bool:
        return any(self.counts[what] for what in COUNT_LABELS if what != "recording_bytes")


def recording_file(data_dir: Path, stored: str) -> Path | None:
    """The file a call's ``recording_path`` names, or None when it would be outside ``data_dir``."""
    root = Path(data_dir).resolve()
    path = (root / stored).resolve()
    return path if root in path.parents else None


def delete_file(path: Path, tally: Tally, dry_run: bool, what: str = "recordings") -> bool:
    """Delete ``path`` (counted as ``what``, with its size); a file already gone counts as deleted. False
    when it could not be deleted (logged with the path, so an admin can)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    except OSError as exc:
        log.error("could not read %s to delete it: %s", path, exc.strerror or exc)
        tally.add("recordings_failed")
        return False
    if not dry_run:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("could not delete %s: %s", path, exc.strerror or exc)
            tally.add("recordings_failed")
            return False
    tally.add(what)
    tally.add("recording_bytes", size)
    return True


def remove_call_data(
    session: Session,
    call_ids: Iterable[int],
    parts: Iterable[str],
    reason: str,
    data_dir: Path,
    tally: Tally,
    *,
    dry_run: bool = False,
) -> None:
    """Remove ``parts`` (``DATA_PARTS``) of each call's personal data, for ``reason`` (``REMOVAL_REASONS``).

    ``personal`` also takes the recording and the transcript: they are the caller's voice and words."""
    wanted = set(parts)
    if not wanted <= set(DATA_PARTS) or reason not in REMOVAL_REASONS:
        raise ValueError(f"parts {sorted(wanted)} or reason {reason!r} unknown")
    if "personal" in wanted:
        wanted |= {"recording", "transcript"}
    ids = list(call_ids)
    if not ids:
        return
    rows = session.execute(
        select(
            Call.id,
            Call.recording_path,
            Call.data_removed,
            Call.remote_number,
            Call.purpose,
            Call.notes,
            Call.resolution,
            Call.customer_id,
        ).where(Call.id.in_(ids))
    ).all()
    for row in rows:
        removed = dict(row.data_removed or {})
        values: dict[str, object] = {}
        if "recording" in wanted and row.recording_path:
            path = recording_file(data_dir, row.recording_path)
            if path is None or delete_file(path, tally, dry_run):
                values["recording_path"] = ""
                removed["recording"] = reason
        if "transcript" in wanted:
            lines = rows_changed(session, delete(Utterance).where(Utterance.call_id == row.id))
            quoted = rows_changed(
                session,
                update(RuleHit).where(RuleHit.call_id == row.id, RuleHit.matched_text != "").values(matched_text=""),
            )
            tally.add("utterances", lines)
            tally.add("quoted_findings", quoted)
            if lines or quoted:
                tally.add("transcript_calls")
                removed["transcript"] = reason
        if "personal" in wanted:
            if row.remote_number or row.purpose or row.notes or row.resolution or row.customer_id is not None:
                tally.add("personal_calls")
            values.update(remote_number="", purpose="", notes="", resolution="", customer_id=None)
            removed["personal"] = reason
        if removed != (row.data_removed or {}):
            values["data_removed"] = removed
        if values:
            session.execute(update(Call).where(Call.id == row.id).values(**values))
