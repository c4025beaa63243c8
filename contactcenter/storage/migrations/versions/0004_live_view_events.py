"""live view events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:26:10.978018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sip_call_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("agent_extension", sa.String(length=64), nullable=False),
        sa.Column("at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_events")),
    )
    with op.batch_alter_table("live_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_live_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_events_sip_call_id"), ["sip_call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_events_sip_call_id"))
        batch_op.drop_index(batch_op.f("ix_live_events_at"))

    op.drop_table("live_events")
