"""conversation measures: how a call was talked (talk time per leg, overlap, silence, interruptions, speech
rate) kept with the call for the scorecards, and where a finding that is a stretch of the call ends

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conversation", sa.JSON(), nullable=True))
    with op.batch_alter_table("rule_hits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_hits", schema=None) as batch_op:
        batch_op.drop_column("end_s")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("conversation")
