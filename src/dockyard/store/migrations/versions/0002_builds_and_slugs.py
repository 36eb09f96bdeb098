"""builds and slugs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:31:47.539596
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UID_BASE = 1_000_000


def upgrade() -> None:
    op.create_table(
        "slugs",
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("blob", sa.String(length=100), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("process_types", sa.JSON(), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("commit_description", sa.String(length=500), nullable=True),
        sa.Column("buildpack_provided_description", sa.String(length=200), nullable=True),
        sa.Column("stack", sa.String(length=50), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_slugs_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slugs")),
    )
    with op.batch_alter_table("slugs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slugs_app_id"), ["app_id"], unique=False)

    op.create_table(
        "builds",
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("source_version", sa.String(length=200), nullable=True),
        sa.Column("source_checksum", sa.String(length=80), nullable=True),
        sa.Column("buildpacks", sa.JSON(), nullable=False),
        sa.Column("stack", sa.String(length=50), nullable=False),
        sa.Column("slug_id", sa.Uuid(), nullable=True),
        sa.Column("release_id", sa.Uuid(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name=op.f("fk_builds_app_id_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_builds_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["slug_id"], ["slugs.id"], name=op.f("fk_builds_slug_id_slugs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_builds_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_builds_app_id"), ["app_id"], unique=False)

    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("buildpacks", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column(
                "formation_defaults", sa.JSON(), nullable=False, server_default=sa.text("'{}'")
            )
        )
        batch_op.create_unique_constraint(batch_op.f("uq_apps_uid"), ["uid"])

    # Each existing app gets its own unprivileged Unix user id, as new apps do.
    apps = sa.table(
        "apps", sa.column("id", sa.Uuid()), sa.column("uid", sa.Integer()), sa.column("created_at")
    )
    connection = op.get_bind()
    ids = connection.execute(sa.select(apps.c.id).order_by(apps.c.created_at)).scalars().all()
    for number, app_id in enumerate(ids):
        connection.execute(sa.update(apps).where(apps.c.id == app_id).values(uid=UID_BASE + number))

    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_releases_slug_id_slugs"), "slugs", ["slug_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_releases_slug_id_slugs"), type_="foreignkey")

    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_apps_uid"), type_="unique")
        batch_op.drop_column("formation_defaults")
        batch_op.drop_column("buildpacks")
        batch_op.drop_column("uid")

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builds_app_id"))

    op.drop_table("builds")
    with op.batch_alter_table("slugs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slugs_app_id"))

    op.drop_table("slugs")
