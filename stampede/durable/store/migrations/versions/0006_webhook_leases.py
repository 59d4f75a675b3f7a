"""Webhook leases: which delivery worker sends an endpoint's events, until when.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_leases",
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(120), nullable=False),
        sa.Column("until_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_webhook_attempts_ts", "webhook_attempts", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_webhook_attempts_ts", "webhook_attempts")
    op.drop_table("webhook_leases")
