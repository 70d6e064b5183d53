"""督办 levels, 回访 callbacks and the 联席会议 (issue 12).

``urge_suggestion``: urges the SLA tick suggests per overdue clock and level (蓝/橙/红), to be
confirmed by 政务办; ``callback_survey``: 政务办's phone callbacks (reply and result
satisfaction); ``joint_meeting`` and ``meeting_item``: the 联席会议 agenda, each
department's opinion and the decision per escalated ticket. Also the indexes the
assessment's period queries need (tickets by creation, clocks by kind and due time, events
by kind and time, surveys by time).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:30:00+00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "joint_meeting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("doc_number", sa.String(length=64), nullable=True),
        sa.Column("attendance", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_joint_meeting")),
    )
    op.create_index(op.f("ix_joint_meeting_held_on"), "joint_meeting", ["held_on"], unique=False)
    op.create_table(
        "callback_survey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller_id", sa.Integer(), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column(
            "reply_satisfaction",
            sa.Enum(
                "满意",
                "基本满意",
                "不满意",
                name="reply_satisfaction",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column(
            "result_satisfaction",
            sa.Enum(
                "满意",
                "基本满意",
                "不满意",
                name="result_satisfaction",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["caller_id"],
            ["commissioner.id"],
            name=op.f("fk_callback_survey_caller_id_commissioner"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_callback_survey_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_survey")),
    )
    op.create_index(
        op.f("ix_callback_survey_called_at"), "callback_survey", ["called_at"], unique=False
    )
    op.create_index(
        op.f("ix_callback_survey_ticket_id"), "callback_survey", ["ticket_id"], unique=False
    )
    op.create_table(
        "meeting_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opinions", sa.JSON(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("lead_department", sa.String(length=64), nullable=True),
        sa.Column("helpers", sa.JSON(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["joint_meeting.id"],
            name=op.f("fk_meeting_item_meeting_id_joint_meeting"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_meeting_item_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_item")),
    )
    op.create_index(
        op.f("ix_meeting_item_meeting_id"), "meeting_item", ["meeting_id"], unique=False
    )
    op.create_index(op.f("ix_meeting_item_ticket_id"), "meeting_item", ["ticket_id"], unique=False)
    op.create_table(
        "urge_suggestion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("clock_id", sa.Integer(), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "blue",
                "orange",
                "red",
                name="urge_level",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("days_late", sa.Integer(), nullable=False),
        sa.Column("suggested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by", sa.String(length=64), nullable=True),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["clock_id"], ["sla_clock.id"], name=op.f("fk_urge_suggestion_clock_id_sla_clock")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_urge_suggestion_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_urge_suggestion")),
        sa.UniqueConstraint("clock_id", "level", name=op.f("uq_urge_suggestion_clock_id_level")),
    )
    op.create_index(
        op.f("ix_urge_suggestion_dropped_at"), "urge_suggestion", ["dropped_at"], unique=False
    )
    op.create_index(
        op.f("ix_urge_suggestion_ticket_id"), "urge_suggestion", ["ticket_id"], unique=False
    )
    op.create_index(
        op.f("ix_meeting_item_decided_at"), "meeting_item", ["decided_at"], unique=False
    )
    # the assessment (yxby report assess) reads these by period
    op.create_index(op.f("ix_sla_clock_kind_due_at"), "sla_clock", ["kind", "due_at"], unique=False)
    op.create_index(op.f("ix_survey_at"), "survey", ["at"], unique=False)
    op.create_index(op.f("ix_ticket_created_at"), "ticket", ["created_at"], unique=False)
    op.create_index(op.f("ix_ticket_event_kind_at"), "ticket_event", ["kind", "at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ticket_event_kind_at"), table_name="ticket_event")
    op.drop_index(op.f("ix_ticket_created_at"), table_name="ticket")
    op.drop_index(op.f("ix_survey_at"), table_name="survey")
    op.drop_index(op.f("ix_sla_clock_kind_due_at"), table_name="sla_clock")
    op.drop_index(op.f("ix_meeting_item_decided_at"), table_name="meeting_item")
    op.drop_index(op.f("ix_urge_suggestion_ticket_id"), table_name="urge_suggestion")
    op.drop_index(op.f("ix_urge_suggestion_dropped_at"), table_name="urge_suggestion")
    op.drop_table("urge_suggestion")
    op.drop_index(op.f("ix_meeting_item_ticket_id"), table_name="meeting_item")
    op.drop_index(op.f("ix_meeting_item_meeting_id"), table_name="meeting_item")
    op.drop_table("meeting_item")
    op.drop_index(op.f("ix_callback_survey_ticket_id"), table_name="callback_survey")
    op.drop_index(op.f("ix_callback_survey_called_at"), table_name="callback_survey")
    op.drop_table("callback_survey")
    op.drop_index(op.f("ix_joint_meeting_held_on"), table_name="joint_meeting")
    op.drop_table("joint_meeting")
