"""Initial store: events, campaigns, skus, claims with history, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    big, text, s = sa.BigInteger, sa.Text, sa.String
    op.create_table(
        "events",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("type", s(32), nullable=False),
        sa.Column("ts", big, nullable=False),
        sa.Column("epoch", big, nullable=False),
        sa.Column("stream_id", s(48), nullable=False),
        sa.Column("data", text, nullable=False),
    )
    op.create_table(
        "campaigns",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("name", s(200), nullable=False),
        sa.Column("spec", text, nullable=False),
        sa.Column("state", s(16), nullable=False),
        sa.Column("opens_ms", big, nullable=False),
        sa.Column("closes_ms", big, nullable=False),
        sa.Column("hold_ttl_ms", big, nullable=False),
        sa.Column("per_user", sa.Integer, nullable=False),
        sa.Column("max_qty", sa.Integer, nullable=False),
        sa.Column("epoch", big, nullable=False),
        sa.Column("defined_seq", big, nullable=False),
        sa.Column("applied_seq", big, nullable=False),
        sa.Column("max_seq", big, nullable=False),
    )
    op.create_table(
        "skus",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("sku", s(64), primary_key=True),
        sa.Column("price", big, nullable=False),
        sa.Column("per_user", sa.Integer, nullable=False),
        *(sa.Column(name, big, nullable=False)
          for name in ("released", "available", "held", "sold", "expired", "cancelled")),
    )
    op.create_table(
        "claims",
        sa.Column("claim_id", s(100), primary_key=True),
        sa.Column("campaign_id", s(64), nullable=False),
        sa.Column("user_id", s(128), nullable=False),
        sa.Column("sku", s(64), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("price", big, nullable=False),
        sa.Column("status", s(16), nullable=False),
        sa.Column("deadline_ms", big, nullable=False),
        sa.Column("created_ms", big, nullable=False),
        sa.Column("updated_seq", big, nullable=False),
        sa.Column("idem_key", text),
        sa.Column("fingerprint", text),
    )
    op.create_index("ix_claims_campaign", "claims", ["campaign_id"])
    op.create_table(
        "claim_history",
        sa.Column("campaign_id", s(64), primary_key=True),
        sa.Column("seq", big, primary_key=True, autoincrement=False),
        sa.Column("claim_id", s(100), nullable=False),
        sa.Column("status", s(16), nullable=False),
        sa.Column("ts", big, nullable=False),
    )
    op.create_index("ix_claim_history_claim", "claim_history", ["claim_id"])
    op.create_table(
        "dead_letters",
        sa.Column("stream", s(100), primary_key=True),
        sa.Column("entry_id", s(48), primary_key=True),
        sa.Column("campaign_id", s(64), nullable=False),
        sa.Column("fields", text, nullable=False),
        sa.Column("error", text, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("ts", big, nullable=False),
    )


def downgrade() -> None:
    for name in ("dead_letters", "claim_history", "claims", "skus", "campaigns", "events"):
        op.drop_table(name)
