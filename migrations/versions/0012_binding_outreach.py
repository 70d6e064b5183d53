"""Verified binding codes, notices and their receipts (issue 14).

``channel_identity`` records how (and by whom) its binding to an enterprise was verified,
failed code attempts and a lock, and whether it turned notices off; ``ticket`` and
``survey`` carry 未核验; ``commissioner`` gains ``duties`` (亮职责). New tables:
``enterprise_code`` (one-time 核验码, hashed), ``notice`` and ``notice_receipt``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 14:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _flag(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("commissioner") as batch_op:
        batch_op.add_column(sa.Column("duties", sa.Text(), nullable=True))
    with op.batch_alter_table("channel_identity") as batch_op:
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("verified_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("verified_how", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("verify_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("verify_locked_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(_flag("notices_off"))
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.add_column(_flag("unverified"))
    with op.batch_alter_table("survey") as batch_op:
        batch_op.add_column(_flag("unverified"))
    # tickets and ratings from before verification existed came from unverified chats
    op.execute("UPDATE ticket SET unverified = TRUE WHERE channel_identity_id IS NOT NULL")
    op.execute(
        "UPDATE survey SET unverified = TRUE WHERE ticket_id IN"
        " (SELECT id FROM ticket WHERE channel_identity_id IS NOT NULL)"
        " AND actor LIKE '%:%'"
    )

    op.create_table(
        "enterprise_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_identity_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprise.id"],
            name=op.f("fk_enterprise_code_enterprise_id_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["used_identity_id"], ["channel_identity.id"],
            name=op.f("fk_enterprise_code_used_identity_id_channel_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_enterprise_code_code_hash")),
    )  # fmt: skip
    op.create_index(op.f("ix_enterprise_code_enterprise_id"), "enterprise_code", ["enterprise_id"])

    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("image_url", sa.String(length=500), nullable=True),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_by", sa.String(length=64), nullable=True),
        sa.Column("enterprises", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice")),
    )
    op.create_index(op.f("ix_notice_department"), "notice", ["department"])

    op.create_table(
        "notice_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("channel_identity_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("outbox_key", sa.String(length=200), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("tickets", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notice.id"], name=op.f("fk_notice_receipt_notice_id_notice")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprise.id"],
            name=op.f("fk_notice_receipt_enterprise_id_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_identity_id"], ["channel_identity.id"],
            name=op.f("fk_notice_receipt_channel_identity_id_channel_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_receipt")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_notice_receipt_notice_id_enterprise_id"),
        "notice_receipt",
        ["notice_id", "enterprise_id"],
    )
    op.create_index(
        op.f("ix_notice_receipt_channel_identity_id_notice_id"),
        "notice_receipt",
        ["channel_identity_id", "notice_id"],
    )


def downgrade() -> None:
    op.drop_table("notice_receipt")
    op.drop_table("notice")
    op.drop_table("enterprise_code")
    with op.batch_alter_table("survey") as batch_op:
        batch_op.drop_column("unverified")
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_column("unverified")
    with op.batch_alter_table("channel_identity") as batch_op:
        for column in (
            "notices_off", "verify_locked_until", "verify_failures",
            "verified_how", "verified_by", "verified_at",
        ):  # fmt: skip
            batch_op.drop_column(column)
    with op.batch_alter_table("commissioner") as batch_op:
        batch_op.drop_column("duties")
