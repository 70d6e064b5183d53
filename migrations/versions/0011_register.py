"""The living 名录库: status, zombie flags, 楼宇/网格/招商, industry codes, sync log (issue 14).

``enterprise`` gains what a 市场监管局 export says about an entity (status and when it changed,
楼宇/园区, 网格, 招商落户部门, GB/T 4754 industry code, 住所, 法定代表人, 成立日期, registered
contact, latest annual report) and the zombie flag the register rules set. ``register_sync``
logs every sync run (dry runs too), ``register_rejection`` every rejected row with its reason
and raw values, ``register_change`` the field-level history of every enterprise a sync touched.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = ("status", "zombie", "building", "grid")


def upgrade() -> None:
    with op.batch_alter_table("enterprise") as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=8), nullable=False, server_default="存续")
        )
        batch_op.add_column(sa.Column("status_changed_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("zombie", sa.Boolean(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("zombie_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("building", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("grid", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("recruited_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("industry_code", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("registered_address", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("legal_representative", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("established_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("contact_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("contact_phone", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("annual_report_year", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("left_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
        for column in INDEXED:
            batch_op.create_index(batch_op.f(f"ix_enterprise_{column}"), [column], unique=False)

    op.create_table(
        "register_sync",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("left", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("zombies", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_register_sync")),
    )
    op.create_table(
        "register_rejection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("uscc", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["register_sync.id"],
            name=op.f("fk_register_rejection_sync_id_register_sync"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_register_rejection")),
    )
    with op.batch_alter_table("register_rejection") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_register_rejection_sync_id"), ["sync_id"], unique=False
        )
    op.create_table(
        "register_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_register_change_enterprise_id_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["sync_id"],
            ["register_sync.id"],
            name=op.f("fk_register_change_sync_id_register_sync"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_register_change")),
    )
    with op.batch_alter_table("register_change") as batch_op:
        batch_op.create_index(batch_op.f("ix_register_change_sync_id"), ["sync_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_register_change_enterprise_id_sync_id"),
            ["enterprise_id", "sync_id"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("register_change")
    op.drop_table("register_rejection")
    op.drop_table("register_sync")
    with op.batch_alter_table("enterprise") as batch_op:
        for column in INDEXED:
            batch_op.drop_index(batch_op.f(f"ix_enterprise_{column}"))
        for column in (
            "synced_at",
            "left_on",
            "annual_report_year",
            "contact_phone",
            "contact_name",
            "established_on",
            "legal_representative",
            "registered_address",
            "industry_code",
            "recruited_by",
            "grid",
            "building",
            "zombie_reason",
            "zombie",
            "status_changed_on",
            "status",
        ):
            batch_op.drop_column(column)
