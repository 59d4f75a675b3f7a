"""Webhook attempts: the event type and the latency of each, for the delivery log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_attempts") as batch:
        batch.add_column(sa.Column("event_type", sa.String(64)))
        batch.add_column(sa.Column("latency_ms", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempts") as batch:
        batch.drop_column("latency_ms")
        batch.drop_column("event_type")
