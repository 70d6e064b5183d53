"""Console sign-in: passwords and lockout, server-side sessions, set-password links, an audit
trail, and the 管理员 role.

``console_account`` holds a commissioner's argon2id hash and failed-sign-in count;
``console_session`` one signed-in browser (only the token's SHA-256); ``console_password_link``
one-time set-password codes (hashed); ``audit_event`` every sign-in, failure, lock, sign-out
and console action (append-only). ``commissioner.role`` accepts 管理员.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:00:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_OLD = ('专员', '负责人', '政务办')
ROLES_NEW = (*ROLES_OLD, '管理员')


def _roles(values: Sequence[str]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    with op.batch_alter_table('commissioner') as batch_op:
        batch_op.drop_constraint(op.f('ck_commissioner_commissioner_role'), type_='check')
        batch_op.create_check_constraint('commissioner_role', f"role IN ({listed})")


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _roles(ROLES_NEW)
    op.create_table(
        'console_account',
        sa.Column('commissioner_id', sa.Integer(), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        _at('password_set_at'),
        sa.Column('failed_attempts', sa.Integer(), nullable=False),
        _at('last_failed_at'),
        _at('locked_until'),
        _at('last_sign_in_at'),
        sa.ForeignKeyConstraint(
            ['commissioner_id'], ['commissioner.id'],
            name=op.f('fk_console_account_commissioner_id_commissioner'),
        ),
        sa.PrimaryKeyConstraint('commissioner_id', name=op.f('pk_console_account')),
    )
    op.create_table(
        'console_session',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('commissioner_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        _at('created_at', nullable=False),
        _at('last_seen_at', nullable=False),
        _at('expires_at', nullable=False),
        _at('ended_at'),
        sa.Column('end_reason', sa.String(length=20), nullable=True),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ['commissioner_id'], ['commissioner.id'],
            name=op.f('fk_console_session_commissioner_id_commissioner'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_session')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_console_session_token_hash')),
    )
    with op.batch_alter_table('console_session', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_console_session_commissioner_id_ended_at'),
            ['commissioner_id', 'ended_at'],
            unique=False,
        )
    op.create_table(
        'console_password_link',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('commissioner_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        _at('created_at', nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        _at('expires_at', nullable=False),
        _at('used_at'),
        _at('superseded_at'),
        sa.ForeignKeyConstraint(
            ['commissioner_id'], ['commissioner.id'],
            name=op.f('fk_console_password_link_commissioner_id_commissioner'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_password_link')),
        sa.UniqueConstraint('code_hash', name=op.f('uq_console_password_link_code_hash')),
    )
    with op.batch_alter_table('console_password_link', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_console_password_link_commissioner_id'),
            ['commissioner_id'],
            unique=False,
        )
    op.create_table(
        'audit_event',
        sa.Column('id', sa.Integer(), nullable=False),
        _at('at', nullable=False),
        sa.Column('commissioner_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('ticket_number', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ['commissioner_id'], ['commissioner.id'],
            name=op.f('fk_audit_event_commissioner_id_commissioner'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event')),
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_at'), ['at'], unique=False)
        batch_op.create_index(
            batch_op.f('ix_audit_event_action_at'), ['action', 'at'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_audit_event_commissioner_id_at'), ['commissioner_id', 'at'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_audit_event_ticket_number'), ['ticket_number'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_ticket_number'))
        batch_op.drop_index(batch_op.f('ix_audit_event_commissioner_id_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_action_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_at'))
    op.drop_table('audit_event')
    with op.batch_alter_table('console_password_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_password_link_commissioner_id'))
    op.drop_table('console_password_link')
    with op.batch_alter_table('console_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_session_commissioner_id_ended_at'))
    op.drop_table('console_session')
    op.drop_table('console_account')
    op.execute("UPDATE commissioner SET active = false, role = '政务办' WHERE role = '管理员'")
    _roles(ROLES_OLD)
