"""Coupons and redemptions: projections of the coupon events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big, s, i = sa.BigInteger, sa.String, sa.Integer
    op.create_table(
        "coupons",
        sa.Column("coupon_id", s(100), primary_key=True),
        sa.Column("campaign_id", s(64), nullable=False),
        sa.Column("template", s(64), nullable=False),
        sa.Column("user_id", s(128), nullable=False),
        sa.Column("status", s(16), nullable=False),
        sa.Column("uses", i, nullable=False),
        sa.Column("uses_left", i, nullable=False),
        sa.Column("face_value", big, nullable=False),
        sa.Column("valid_from_ms", big, nullable=False),
        sa.Column("valid_to_ms", big, nullable=False),
        sa.Column("claim_id", s(100), nullable=False),
        sa.Column("created_ms", big, nullable=False),
        sa.Column("updated_seq", big, nullable=False),
    )
    op.create_index("ix_coupons_campaign", "coupons", ["campaign_id"])
    op.create_index("ix_coupons_user", "coupons", ["user_id"])
    op.create_table(
        "redemptions",
        sa.Column("redemption_id", s(100), primary_key=True),
        sa.Column("campaign_id", s(64), nullable=False),
        sa.Column("coupon_id", s(100), nullable=False),
        sa.Column("merchant_id", s(64), nullable=False),
        sa.Column("order_id", s(128), nullable=False),
        sa.Column("order_amount", big, nullable=False),
        sa.Column("discount", big, nullable=False),
        sa.Column("status", s(16), nullable=False),
        sa.Column("redeemed_ms", big, nullable=False),
        sa.Column("rolled_back_ms", big),
        sa.Column("updated_seq", big, nullable=False),
    )
    op.create_index("ix_redemptions_campaign", "redemptions", ["campaign_id"])
    op.create_index("ix_redemptions_coupon", "redemptions", ["coupon_id"])


def downgrade() -> None:
    op.drop_table("redemptions")
    op.drop_table("coupons")
