"""After-sale: refunds (one row per refund of a sold claim) and ticket check-ins.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big, s, i = sa.BigInteger, sa.String, sa.Integer
    op.create_table(
        "refunds",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("claim_id", s(100), nullable=False),
        sa.Column("user_id", s(128), nullable=False),
        sa.Column("sku", s(64), nullable=False),
        sa.Column("qty", i, nullable=False),
        sa.Column("amount", big, nullable=False),
        sa.Column("left_qty", i, nullable=False),
        sa.Column("units_to", s(16), nullable=False),
        sa.Column("actor", s(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("buyer", i, nullable=False),
        sa.Column("idem_key", sa.Text),
        sa.Column("fingerprint", sa.Text),
        sa.Column("ts", big, nullable=False),
        sa.Column("tickets", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_refunds_claim", "refunds", ["claim_id"])
    op.create_table(
        "checkins",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("ticket_id", s(110), nullable=False),
        sa.Column("claim_id", s(100), nullable=False),
        sa.Column("user_id", s(128), nullable=False),
        sa.Column("sku", s(64), nullable=False),
        sa.Column("gate", s(64), nullable=False),
        sa.Column("scanner", s(64), nullable=False),
        sa.Column("scanned_ms", big, nullable=False),
        sa.Column("ts", big, nullable=False),
    )
    op.create_index("ix_checkins_ticket", "checkins", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_checkins_ticket", table_name="checkins")
    op.drop_table("checkins")
    op.drop_index("ix_refunds_claim", table_name="refunds")
    op.drop_table("refunds")
