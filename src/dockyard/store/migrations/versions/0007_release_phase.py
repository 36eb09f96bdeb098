"""release phase: the postdeploy script of a slug, and its state on a release

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("slugs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("postdeploy", sa.Text(), nullable=True))
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("postdeploy", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("postdeploy")
    with op.batch_alter_table("slugs", schema=None) as batch_op:
        batch_op.drop_column("postdeploy")
