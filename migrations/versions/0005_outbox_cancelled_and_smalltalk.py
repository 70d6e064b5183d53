"""Outbox messages can be withdrawn (``cancelled``); small talk is a turn outcome of its own.

A handoff offer that was not delivered before the request ended is withdrawn instead of
reaching a commissioner later; greetings and thanks are logged as ``smalltalk`` so they are
not counted as questions nothing answered.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_OLD = ('pending', 'sent', 'failed', 'held')
OUTBOX_NEW = (*OUTBOX_OLD, 'cancelled')
TURN_OLD = ('answered', 'solved', 'unsolved', 'suggested', 'none', 'ticket', 'handoff',
            'command', 'input', 'invalid')
TURN_NEW = (*TURN_OLD, 'smalltalk')


def _check(table: str, column: str, name: str, values: Sequence[str]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(op.f(f'ck_{table}_{name}'), type_='check')
        batch_op.create_check_constraint(name, f"{column} IN ({listed})")


def upgrade() -> None:
    _check('outbox_message', 'status', 'outbox_status', OUTBOX_NEW)
    _check('dialogue_turn', 'outcome', 'turn_outcome', TURN_NEW)


def downgrade() -> None:
    op.execute("UPDATE outbox_message SET status = 'failed' WHERE status = 'cancelled'")
    op.execute("UPDATE dialogue_turn SET outcome = 'command' WHERE outcome = 'smalltalk'")
    _check('outbox_message', 'status', 'outbox_status', OUTBOX_OLD)
    _check('dialogue_turn', 'outcome', 'turn_outcome', TURN_OLD)
