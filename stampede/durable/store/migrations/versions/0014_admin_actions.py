"""Admin actions that are no campaign's event (webhooks, credentials, grants, ...).

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_actions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("campaign_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_admin_actions_ts", "admin_actions", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_admin_actions_ts", table_name="admin_actions")
    op.drop_table("admin_actions")
