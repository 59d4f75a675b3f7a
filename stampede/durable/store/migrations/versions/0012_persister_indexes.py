"""Drop `ix_claims_campaign`: `ix_claims_campaign_created` (campaign_id first)
serves every lookup by campaign, and each index is one more random insert
per claim the persister stores (bench.bench_persister).

Revision ID: 0012
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_claims_campaign", table_name="claims")


def downgrade() -> None:
    op.create_index("ix_claims_campaign", "claims", ["campaign_id"])
