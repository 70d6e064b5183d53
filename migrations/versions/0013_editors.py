"""The editors' loop: knowledge drafts and the 编辑 role (issue 13).

``commissioner.role`` accepts 编辑; ``knowledge_draft`` keeps the drafts editors make from the
conversation log, the gap report and resolved tickets.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 14:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_OLD = ("专员", "负责人", "政务办", "管理员")
ROLES_NEW = (*ROLES_OLD, "编辑")


def _roles(values: Sequence[str]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    with op.batch_alter_table("commissioner") as batch_op:
        batch_op.drop_constraint(op.f("ck_commissioner_commissioner_role"), type_="check")
        batch_op.create_check_constraint("commissioner_role", f"role IN ({listed})")


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _roles(ROLES_NEW)
    op.create_table(
        "knowledge_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "wording",
                "entry",
                "case",
                name="draft_kind",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "reviewed",
                "written",
                "discarded",
                name="draft_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("target_entry_id", sa.String(length=80), nullable=True),
        sa.Column("target_file", sa.String(length=200), nullable=True),
        sa.Column("entry", sa.JSON(), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
        sa.Column("reviewed_by", sa.String(length=64), nullable=True),
        _at("reviewed_at"),
        sa.Column("written_by", sa.String(length=64), nullable=True),
        _at("written_at"),
        sa.Column("written_path", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_draft")),
    )
    with op.batch_alter_table("knowledge_draft", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_knowledge_draft_status_updated_at"),
            ["status", "updated_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("knowledge_draft", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_draft_status_updated_at"))
    op.drop_table("knowledge_draft")
    op.execute("UPDATE commissioner SET active = false, role = '管理员' WHERE role = '编辑'")
    _roles(ROLES_OLD)
