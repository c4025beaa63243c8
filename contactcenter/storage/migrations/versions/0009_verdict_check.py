"""verdicts: a call that could not be checked says why; audio the recogniser never heard

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unchecked_reason", sa.String(length=32), server_default="", nullable=False))
        batch_op.add_column(sa.Column("dropped_seconds", sa.Float(), server_default="0", nullable=False))
    # Calls stored before this revision with a score but no transcript and no finding were never checked
    # (no speech model, or nobody answered): their 100 was not a verdict.
    nothing_heard = (
        "compliance_score IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM utterances WHERE utterances.call_id = calls.id) "
        "AND NOT EXISTS (SELECT 1 FROM rule_hits WHERE rule_hits.call_id = calls.id)"
    )
    op.execute(
        "UPDATE calls SET compliance_score = NULL, unchecked_reason = 'not_answered' "
        f"WHERE answered_at IS NULL AND {nothing_heard}"
    )
    op.execute(f"UPDATE calls SET compliance_score = NULL, unchecked_reason = 'no_speech' WHERE {nothing_heard}")


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("dropped_seconds")
        batch_op.drop_column("unchecked_reason")
