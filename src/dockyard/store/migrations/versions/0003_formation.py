"""formation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 16:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "formations",
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=63), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("size", sa.String(length=30), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_formations_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_formations")),
        sa.UniqueConstraint("app_id", "type", name=op.f("uq_formations_app_id")),
    )
    with op.batch_alter_table("formations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_formations_app_id"), ["app_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("formations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_formations_app_id"))

    op.drop_table("formations")
