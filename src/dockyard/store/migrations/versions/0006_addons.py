"""addons

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addons",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.Column("plan", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("provider_data", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_addons_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addons")),
        sa.UniqueConstraint("name", name=op.f("uq_addons_name")),
    )
    with op.batch_alter_table("addons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_addons_app_id"), ["app_id"], unique=False)

    op.create_table(
        "addon_attachments",
        sa.Column("addon_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["addon_id"],
            ["addons.id"],
            name=op.f("fk_addon_attachments_addon_id_addons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_addon_attachments_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addon_attachments")),
        sa.UniqueConstraint("app_id", "name", name=op.f("uq_addon_attachments_app_id")),
    )
    with op.batch_alter_table("addon_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_addon_attachments_addon_id"), ["addon_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_addon_attachments_app_id"), ["app_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("addon_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_addon_attachments_app_id"))
        batch_op.drop_index(batch_op.f("ix_addon_attachments_addon_id"))
    op.drop_table("addon_attachments")
    with op.batch_alter_table("addons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_addons_app_id"))
    op.drop_table("addons")
