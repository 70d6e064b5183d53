"""The outbox retries until a horizon, counts timeouts, can be requeued and alerts once.

A push is retried until ``created_at`` (or ``requeued_at``) plus the configured horizon;
``timeouts`` counts sends that timed out ("maybe sent"); ``stuck_alerted_at`` and
``failed_alerted_at`` make the alert to the department's 负责人 and 政务办 go out once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timeouts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('requeued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('requeues', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(
            sa.Column('stuck_alerted_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column('failed_alerted_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f('ix_outbox_message_status_created_at'),
            ['status', 'created_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_message_status_created_at'))
        batch_op.drop_column('failed_alerted_at')
        batch_op.drop_column('stuck_alerted_at')
        batch_op.drop_column('requeues')
        batch_op.drop_column('requeued_at')
        batch_op.drop_column('timeouts')
