"""Inbound messages acknowledged without their answer are stored until the answer is queued.

WeChat is told ``success`` only once the message is in ``deferred_message``; the row is
marked done in the transaction that queues the answer, and rows a crash left open are
completed at the next start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:00:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'deferred_message',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('msg_id', sa.String(length=128), nullable=False),
        sa.Column('user_key', sa.String(length=128), nullable=False),
        sa.Column('message', sa.JSON(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deferred_message')),
        sa.UniqueConstraint(
            'channel', 'msg_id', name=op.f('uq_deferred_message_channel_msg_id')
        ),
    )
    with op.batch_alter_table('deferred_message', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_deferred_message_channel_done_at_received_at'),
            ['channel', 'done_at', 'received_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('deferred_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deferred_message_channel_done_at_received_at'))
    op.drop_table('deferred_message')
