"""data removal: what of a call was removed and why; a record of each retention purge and erasure

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_removed", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    op.create_table(
        "data_removals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("done_by", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_removals")),
    )
    with op.batch_alter_table("data_removals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_removals_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("data_removals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_removals_at"))
    op.drop_table("data_removals")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("data_removed")
