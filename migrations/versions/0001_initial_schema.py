"""Initial schema: enterprises, commissioners, tickets, events, SLA clocks, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 18:34:09.696179+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('commissioner',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=False),
    sa.Column('role', sa.Enum('专员', '负责人', '政务办', name='commissioner_role', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commissioner')),
    sa.UniqueConstraint('name', 'department', name=op.f('uq_commissioner_name_department'))
    )
    op.create_index(op.f('ix_commissioner_department'), 'commissioner', ['department'], unique=False)

    op.create_table('outbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('pending', 'sent', 'failed', 'held', name='outbox_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_message')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_message_dedupe_key'))
    )
    op.create_index(op.f('ix_outbox_message_status_next_attempt_at'), 'outbox_message', ['status', 'next_attempt_at'], unique=False)

    op.create_table('ticket_counter',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_ticket_counter'))
    )
    op.create_table('commissioner_binding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('commissioner_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('user_key', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['commissioner_id'], ['commissioner.id'], name=op.f('fk_commissioner_binding_commissioner_id_commissioner')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commissioner_binding')),
    sa.UniqueConstraint('channel', 'user_key', name=op.f('uq_commissioner_binding_channel_user_key'))
    )
    op.create_index(op.f('ix_commissioner_binding_commissioner_id'), 'commissioner_binding', ['commissioner_id'], unique=False)

    op.create_table('enterprise',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('企业', '个体工商户', name='enterprise_kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('industry', sa.String(length=100), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('commissioner_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['commissioner_id'], ['commissioner.id'], name=op.f('fk_enterprise_commissioner_id_commissioner')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enterprise')),
    sa.UniqueConstraint('uscc', name=op.f('uq_enterprise_uscc'))
    )
    op.create_index(op.f('ix_enterprise_commissioner_id'), 'enterprise', ['commissioner_id'], unique=False)

    op.create_table('channel_identity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('user_key', sa.String(length=128), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=True),
    sa.Column('contact_phone', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_channel_identity_enterprise_id_enterprise')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_identity')),
    sa.UniqueConstraint('channel', 'user_key', name=op.f('uq_channel_identity_channel_user_key'))
    )
    op.create_index(op.f('ix_channel_identity_enterprise_id'), 'channel_identity', ['enterprise_id'], unique=False)

    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=True),
    sa.Column('channel_identity_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=False),
    sa.Column('route_rule', sa.String(length=20), nullable=False),
    sa.Column('route_reason', sa.Text(), nullable=False),
    sa.Column('commissioner_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.Enum('new', 'accepted', 'in_progress', 'escalated', 'resolved', 'feedback_sent', 'surveyed', 'closed', name='ticket_state', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.Column('escalation_lead_department', sa.String(length=64), nullable=True),
    sa.Column('escalation_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_identity_id'], ['channel_identity.id'], name=op.f('fk_ticket_channel_identity_id_channel_identity')),
    sa.ForeignKeyConstraint(['commissioner_id'], ['commissioner.id'], name=op.f('fk_ticket_commissioner_id_commissioner')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_ticket_enterprise_id_enterprise')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket')),
    sa.UniqueConstraint('number', name=op.f('uq_ticket_number'))
    )
    op.create_index(op.f('ix_ticket_channel_identity_id'), 'ticket', ['channel_identity_id'], unique=False)
    op.create_index(op.f('ix_ticket_commissioner_id'), 'ticket', ['commissioner_id'], unique=False)
    op.create_index(op.f('ix_ticket_department'), 'ticket', ['department'], unique=False)
    op.create_index(op.f('ix_ticket_enterprise_id'), 'ticket', ['enterprise_id'], unique=False)
    op.create_index(op.f('ix_ticket_state'), 'ticket', ['state'], unique=False)

    op.create_table('sla_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('contact', 'done', 'feedback', 'escalation', name='clock_kind', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=False),
    sa.Column('workdays', sa.Integer(), nullable=True),
    sa.Column('calendar_fallback', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('remind_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('met_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('breached_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_sla_clock_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_clock'))
    )
    op.create_index(op.f('ix_sla_clock_active_due_at'), 'sla_clock', ['active', 'due_at'], unique=False)
    op.create_index(op.f('ix_sla_clock_department'), 'sla_clock', ['department'], unique=False)
    op.create_index(op.f('ix_sla_clock_ticket_id'), 'sla_clock', ['ticket_id'], unique=False)

    op.create_table('survey',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('result', sa.Enum('满意', '基本满意', '不满意', name='survey_result', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_survey_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey'))
    )
    op.create_index(op.f('ix_survey_ticket_id'), 'survey', ['ticket_id'], unique=False)

    op.create_table('ticket_department',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=64), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_department_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_department')),
    sa.UniqueConstraint('ticket_id', 'department', name=op.f('uq_ticket_department_ticket_id_department'))
    )
    op.create_index(op.f('ix_ticket_department_department'), 'ticket_department', ['department'], unique=False)
    op.create_index(op.f('ix_ticket_department_ticket_id'), 'ticket_department', ['ticket_id'], unique=False)

    op.create_table('ticket_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.Enum('new', 'accepted', 'in_progress', 'escalated', 'resolved', 'feedback_sent', 'surveyed', 'closed', name='from_state', native_enum=False, create_constraint=True, length=20), nullable=True),
    sa.Column('to_state', sa.Enum('new', 'accepted', 'in_progress', 'escalated', 'resolved', 'feedback_sent', 'surveyed', 'closed', name='to_state', native_enum=False, create_constraint=True, length=20), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_event_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_event'))
    )
    op.create_index(op.f('ix_ticket_event_ticket_id_at'), 'ticket_event', ['ticket_id', 'at'], unique=False)

    op.create_table('transcript_line',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_identity_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('direction', sa.Enum('in', 'out', name='direction', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['channel_identity_id'], ['channel_identity.id'], name=op.f('fk_transcript_line_channel_identity_id_channel_identity')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_transcript_line_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_line'))
    )
    op.create_index(op.f('ix_transcript_line_channel_identity_id_at'), 'transcript_line', ['channel_identity_id', 'at'], unique=False)
    op.create_index(op.f('ix_transcript_line_ticket_id'), 'transcript_line', ['ticket_id'], unique=False)



def downgrade() -> None:
    op.drop_index(op.f('ix_transcript_line_ticket_id'), table_name='transcript_line')
    op.drop_index(op.f('ix_transcript_line_channel_identity_id_at'), table_name='transcript_line')

    op.drop_table('transcript_line')
    op.drop_index(op.f('ix_ticket_event_ticket_id_at'), table_name='ticket_event')

    op.drop_table('ticket_event')
    op.drop_index(op.f('ix_ticket_department_ticket_id'), table_name='ticket_department')
    op.drop_index(op.f('ix_ticket_department_department'), table_name='ticket_department')

    op.drop_table('ticket_department')
    op.drop_index(op.f('ix_survey_ticket_id'), table_name='survey')

    op.drop_table('survey')
    op.drop_index(op.f('ix_sla_clock_ticket_id'), table_name='sla_clock')
    op.drop_index(op.f('ix_sla_clock_department'), table_name='sla_clock')
    op.drop_index(op.f('ix_sla_clock_active_due_at'), table_name='sla_clock')

    op.drop_table('sla_clock')
    op.drop_index(op.f('ix_ticket_state'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_enterprise_id'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_department'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_commissioner_id'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_channel_identity_id'), table_name='ticket')

    op.drop_table('ticket')
    op.drop_index(op.f('ix_channel_identity_enterprise_id'), table_name='channel_identity')

    op.drop_table('channel_identity')
    op.drop_index(op.f('ix_enterprise_commissioner_id'), table_name='enterprise')

    op.drop_table('enterprise')
    op.drop_index(op.f('ix_commissioner_binding_commissioner_id'), table_name='commissioner_binding')

    op.drop_table('commissioner_binding')
    op.drop_table('ticket_counter')
    op.drop_index(op.f('ix_outbox_message_status_next_attempt_at'), table_name='outbox_message')

    op.drop_table('outbox_message')
    op.drop_index(op.f('ix_commissioner_department'), table_name='commissioner')

    op.drop_table('commissioner')
