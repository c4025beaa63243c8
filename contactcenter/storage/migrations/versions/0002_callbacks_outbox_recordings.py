"""callbacks scheduling, plugin outbox, recording path

Existing rows get server defaults for the new non-null columns (callbacks made before this revision are
"manual"). The APScheduler job table (apscheduler_jobs) is APScheduler's own and not managed here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:48:17.394336
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugin_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plugin", sa.String(length=100), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_outbox")),
    )
    with op.batch_alter_table("plugin_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plugin_outbox_delivered_at"), ["delivered_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_plugin_outbox_next_attempt_at"), ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_plugin_outbox_plugin"), ["plugin"], unique=False)

    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="manual"))
        batch_op.add_column(sa.Column("owner_extension", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("deadline_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("job_due_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("fired_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("closed_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_unique_constraint(batch_op.f("uq_callbacks_call_id"), ["call_id", "kind"])
        batch_op.create_unique_constraint(batch_op.f("uq_callbacks_ticket_id"), ["ticket_id", "kind"])

    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_survey_responses_callback_id"), ["callback_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_survey_responses_callback_id_callbacks"), "callbacks", ["callback_id"], ["id"]
        )

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording_path", sa.String(length=500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_survey_responses_callback_id_callbacks"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_survey_responses_callback_id"))
        batch_op.drop_column("callback_id")

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("recording_path")

    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_callbacks_ticket_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_callbacks_call_id"), type_="unique")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("fired_at")
        batch_op.drop_column("job_due_at")
        batch_op.drop_column("note")
        batch_op.drop_column("deadline_at")
        batch_op.drop_column("owner_extension")
        batch_op.drop_column("kind")

    op.drop_table("scheduler_leases")
    with op.batch_alter_table("plugin_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plugin_outbox_plugin"))
        batch_op.drop_index(batch_op.f("ix_plugin_outbox_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_plugin_outbox_delivered_at"))

    op.drop_table("plugin_outbox")
