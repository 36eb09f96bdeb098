"""domain sni endpoint: the uploaded certificate a custom domain is associated with

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sni_endpoint_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_domains_sni_endpoint_id"), ["sni_endpoint_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_domains_sni_endpoint_id_certificates"),
            "certificates",
            ["sni_endpoint_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_domains_sni_endpoint_id_certificates"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_domains_sni_endpoint_id"))
        batch_op.drop_column("sni_endpoint_id")
