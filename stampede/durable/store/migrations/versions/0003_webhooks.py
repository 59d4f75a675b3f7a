"""Webhooks: endpoints, per-endpoint cursors per campaign, the attempt log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big, s, i, t = sa.BigInteger, sa.String, sa.Integer, sa.Text
    op.create_table(
        "webhook_endpoints",
        sa.Column("endpoint_id", s(40), primary_key=True),
        sa.Column("url", t, nullable=False),
        sa.Column("events", t, nullable=False),
        sa.Column("campaign_id", s(64)),
        sa.Column("secret", t, nullable=False),
        sa.Column("old_secret", t),
        sa.Column("old_secret_until_ms", big),
        sa.Column("paused", i, nullable=False, server_default="0"),
        sa.Column("failures", i, nullable=False, server_default="0"),
        sa.Column("next_attempt_ms", big, nullable=False, server_default="0"),
        sa.Column("last_error", t),
        sa.Column("created_ms", big, nullable=False),
    )
    op.create_table(
        "webhook_cursors",
        sa.Column("endpoint_id", s(40), primary_key=True),
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("seq", big, nullable=False),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("attempt_id", i, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", s(40), nullable=False),
        sa.Column("message_id", s(100), nullable=False),
        sa.Column("ts", big, nullable=False),
        sa.Column("status", i),
        sa.Column("outcome", s(16), nullable=False),
        sa.Column("error", t),
    )
    op.create_index("ix_webhook_attempts_endpoint", "webhook_attempts",
                    ["endpoint_id", "attempt_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_cursors")
    op.drop_table("webhook_endpoints")
