"""agent desktop: agent states, customer records and their history, the wrap-up on calls and tickets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 07:46:20.717773
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import contactcenter.storage.models
from contactcenter.phones import phone_key

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMPTY = sa.text("''")


def upgrade() -> None:
    op.create_table(
        "agent_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_extension", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("started_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_states")),
    )
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.create_index("ix_agent_states_extension_started", ["agent_extension", "started_at"], unique=False)

    op.create_table(
        "customer_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column("changed_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_changes_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_changes")),
    )
    with op.batch_alter_table("customer_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_changes_customer_id"), ["customer_id"], unique=False)

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("resolution", sa.Text(), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("complaint", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("wrapped_up_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("wrapped_up_by", sa.String(length=100), nullable=False, server_default=EMPTY))
        batch_op.create_index(batch_op.f("ix_calls_remote_number"), ["remote_number"], unique=False)
        batch_op.create_index("ix_calls_remote_number_invited_at", ["remote_number", "invited_at"], unique=False)
        batch_op.create_index("ix_calls_customer_id_invited_at", ["customer_id", "invited_at"], unique=False)

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_key", sa.String(length=32), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("salutation", sa.String(length=16), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("vip", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=False, server_default=EMPTY))
        batch_op.add_column(
            sa.Column("updated_at", contactcenter.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_customers_phone_key"), ["phone_key"], unique=False)

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolution", sa.Text(), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("wrapped_up", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index("ix_tickets_caller_phone_status", ["caller_phone", "status"], unique=False)
        batch_op.create_index("ix_tickets_customer_id_status", ["customer_id", "status"], unique=False)

    # the screen pop's probes: a number's / a customer's newest calls, open tickets (above), open callbacks
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index("ix_callbacks_phone_state", ["phone", "state"], unique=False)
        batch_op.create_index("ix_callbacks_customer_id_state", ["customer_id", "state"], unique=False)

    customers = sa.table(
        "customers", sa.column("id", sa.Integer), sa.column("phone", sa.String), sa.column("phone_key")
    )
    connection = op.get_bind()
    for customer_id, phone in connection.execute(sa.select(customers.c.id, customers.c.phone)).all():
        connection.execute(
            customers.update().where(customers.c.id == customer_id).values(phone_key=phone_key(phone or ""))
        )


def downgrade() -> None:
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_callbacks_customer_id_state")
        batch_op.drop_index("ix_callbacks_phone_state")

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_customer_id_status")
        batch_op.drop_index("ix_tickets_caller_phone_status")
        batch_op.drop_column("wrapped_up")
        batch_op.drop_column("resolution")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_phone_key"))
        batch_op.drop_column("updated_at")
        batch_op.drop_column("notes")
        batch_op.drop_column("vip")
        batch_op.drop_column("salutation")
        batch_op.drop_column("phone_key")

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_customer_id_invited_at")
        batch_op.drop_index("ix_calls_remote_number_invited_at")
        batch_op.drop_index(batch_op.f("ix_calls_remote_number"))
        batch_op.drop_column("wrapped_up_by")
        batch_op.drop_column("wrapped_up_at")
        batch_op.drop_column("complaint")
        batch_op.drop_column("resolution")
        batch_op.drop_column("notes")

    with op.batch_alter_table("customer_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_changes_customer_id"))

    op.drop_table("customer_changes")
    with op.batch_alter_table("agent_states", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_states_extension_started")

    op.drop_table("agent_states")
