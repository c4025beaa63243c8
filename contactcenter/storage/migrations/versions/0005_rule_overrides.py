"""rule overrides

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:23:27.274373
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column("changed_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_changes")),
    )
    with op.batch_alter_table("rule_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_changes_changed_at"), ["changed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rule_changes_rule_id"), ["rule_id"], unique=False)

    op.create_table(
        "rule_overrides",
        sa.Column("rule_id", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("phrases", sa.JSON(), nullable=True),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column("changed_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_rule_overrides")),
    )


def downgrade() -> None:
    op.drop_table("rule_overrides")
    with op.batch_alter_table("rule_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rule_changes_rule_id"))
        batch_op.drop_index(batch_op.f("ix_rule_changes_changed_at"))

    op.drop_table("rule_changes")
