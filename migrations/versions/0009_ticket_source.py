"""Every ticket records where the need came in: its chat channel, the phone, 12345 …

Existing tickets take the channel of the chat they were filed from, else ``other``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = (
    "wechat",
    "telegram",
    "terminal",
    "phone",
    "hotline_12345",
    "shuangwan",
    "mailbox",
    "portal",
    "visit",
    "other",
)


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.add_column(
            sa.Column(
                "source",
                sa.Enum(
                    *SOURCES,
                    name="ticket_source",
                    native_enum=False,
                    create_constraint=True,
                    length=20,
                ),
                nullable=False,
                server_default="other",
            )
        )
        batch_op.create_index(batch_op.f("ix_ticket_source"), ["source"], unique=False)
    op.execute(
        "UPDATE ticket SET source = (SELECT channel_identity.channel FROM channel_identity"
        " WHERE channel_identity.id = ticket.channel_identity_id)"
        " WHERE channel_identity_id IS NOT NULL AND (SELECT channel_identity.channel"
        " FROM channel_identity WHERE channel_identity.id = ticket.channel_identity_id)"
        " IN ('wechat', 'telegram', 'terminal')"
    )


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_source"))
        batch_op.drop_column("source")
