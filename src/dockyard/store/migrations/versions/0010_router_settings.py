"""router settings: an app's own router timeouts (to the first byte, and idle)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("router_timeout", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("router_idle_timeout", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("router_idle_timeout")
        batch_op.drop_column("router_timeout")
