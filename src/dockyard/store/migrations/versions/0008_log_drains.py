"""log drains: where an app's log stream is also sent

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_drains",
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("token", sa.String(length=50), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_log_drains_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_drains")),
        sa.UniqueConstraint("app_id", "url", name=op.f("uq_log_drains_app_id")),
        sa.UniqueConstraint("token", name=op.f("uq_log_drains_token")),
    )
    with op.batch_alter_table("log_drains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_log_drains_app_id"), ["app_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("log_drains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_drains_app_id"))

    op.drop_table("log_drains")
