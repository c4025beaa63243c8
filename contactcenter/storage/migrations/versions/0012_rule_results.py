"""rule results: every rule's verdict on a call with its weight, and the score after reviewers' verdicts

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_rule_results_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_results")),
        sa.UniqueConstraint("call_id", "rule_id", name=op.f("uq_rule_results_call_id")),
    )
    with op.batch_alter_table("rule_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_results_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rule_results_rule_id"), ["rule_id"], unique=False)
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviewed_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("reviewed_score")
    with op.batch_alter_table("rule_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rule_results_rule_id"))
        batch_op.drop_index(batch_op.f("ix_rule_results_call_id"))
    op.drop_table("rule_results")
