"""review queue: each reviewer's daily calls to check, agents' disputes, reasons for overridden verdicts,
the call's hold and transfer times

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 18:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_review_tasks_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["reviewer_id"], ["web_users.id"], name=op.f("fk_review_tasks_reviewer_id_web_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
        sa.UniqueConstraint("call_id", "reviewer_id", name=op.f("uq_review_tasks_call_id")),
    )
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_tasks_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_tasks_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_tasks_state"), ["state"], unique=False)
        batch_op.create_index("ix_review_tasks_reviewer_day", ["reviewer_id", "day"], unique=False)
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("raised_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raised_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=False),
        sa.Column("decided_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_disputes_call_id_calls"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("call_id", "rule_id", name=op.f("uq_disputes_call_id")),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disputes_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_disputes_state"), ["state"], unique=False)
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reasons", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("events", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("events")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_column("reasons")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disputes_state"))
        batch_op.drop_index(batch_op.f("ix_disputes_call_id"))
    op.drop_table("disputes")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_review_tasks_reviewer_day")
        batch_op.drop_index(batch_op.f("ix_review_tasks_state"))
        batch_op.drop_index(batch_op.f("ix_review_tasks_day"))
        batch_op.drop_index(batch_op.f("ix_review_tasks_call_id"))
    op.drop_table("review_tasks")
