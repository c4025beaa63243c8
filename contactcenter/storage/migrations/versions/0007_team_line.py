"""team line: one row per call to the team number

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:19:32.976598
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "team_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sip_call_id", sa.String(length=255), nullable=False),
        sa.Column("team_number", sa.String(length=16), nullable=False),
        sa.Column("remote_number", sa.String(length=64), nullable=False),
        sa.Column("arrived_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=False),
        sa.Column("answered_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ring_ended_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("callback_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callbacks.id"], name=op.f("fk_team_calls_callback_id_callbacks"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_calls")),
        sa.UniqueConstraint("sip_call_id", name=op.f("uq_team_calls_sip_call_id")),
    )
    with op.batch_alter_table("team_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_calls_arrived_at"), ["arrived_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("team_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_calls_arrived_at"))

    op.drop_table("team_calls")
