"""Shared state for several worker processes (issue 15).

``shared_value``: small values every ``yxby serve`` worker sees — the WeChat access token,
"全文" rests, who answers a MsgId — each until its ``expires_at`` (used when no Redis is
configured).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 14:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shared_value",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_shared_value")),
    )
    with op.batch_alter_table("shared_value", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shared_value_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("shared_value", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shared_value_expires_at"))
    op.drop_table("shared_value")
