"""Retention: when a dialogue turn and a transcript line were masked (``yxby db prune``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 14:40:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("dialogue_turn", "transcript_line"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("masked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_processed_message_at"), "processed_message", ["at"])
    op.create_index(op.f("ix_dialogue_turn_at"), "dialogue_turn", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dialogue_turn_at"), table_name="dialogue_turn")
    op.drop_index(op.f("ix_processed_message_at"), table_name="processed_message")
    for table in ("dialogue_turn", "transcript_line"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("masked_at")
