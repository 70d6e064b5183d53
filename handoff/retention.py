"""What the database keeps and for how long (``config/retention.yaml``; ``yxby db prune``).

Each message an enterprise writes leaves a :class:`~handoff.conversations.ProcessedMessage`
(to answer a redelivery once), a :class:`~handoff.conversations.DialogueTurn` (what the bot
made of it) and :class:`~handoff.models.TranscriptLine` rows (the conversation). The policy:

* message ids and delivered owed answers are only needed while a redelivery can come:
  deleted after ``processed_messages_days`` / ``deferred_messages_days``;
* after ``mask_after_days`` what people wrote is masked with the project's one masking rule
  (:func:`handoff.editors.mask`: names, phones, codes, ID and long numbers, e-mail, company
  names) and the display name the channel gave, and a turn's tokens are dropped; the
  hits, entry, outcome and ticket stay, so the assessment's figures and the editors'
  per-entry counts do not change;
* dialogue turns are deleted after ``dialogue_turns_days`` (the assessment's horizon);
* transcript lines of no ticket are deleted after ``transcript_unattached_days``; lines of
  a ticket stay with it.

:func:`prune` is idempotent (masked rows carry ``masked_at``), works in batches so a large
backlog does not hold one long transaction, and with ``dry_run`` only counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from handoff.conversations import DeferredMessage, DialogueTurn, ProcessedMessage
from handoff.db import Database
from handoff.models import ChannelIdentity, TranscriptLine
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = ["PruneReport", "RetentionPolicy", "load_retention", "mask_text", "prune"]

BATCH = 1000


class RetentionPolicy(StrictModel):
    """``config/retention.yaml`` (days; see the file for what each keeps)."""

    processed_messages_days: int = Field(default=7, ge=1)
    deferred_messages_days: int = Field(default=7, ge=1)
    mask_after_days: int = Field(default=180, ge=1)
    dialogue_turns_days: int = Field(default=1095, ge=1)
    transcript_unattached_days: int = Field(default=365, ge=1)


def load_retention(path: Path | None = None) -> RetentionPolicy:
    """Load ``config/retention.yaml`` (or *path*); ``ConfigError`` naming the bad key."""
    return load_model(path or config_dir() / "retention.yaml", RetentionPolicy)


def mask_text(text: str, names: tuple[str, ...] = ()) -> str:
    """*text* masked by the project's one masking rule (:func:`handoff.editors.mask`), with
    *names* (the display names the channel gave) known as people's names."""
    from handoff.editors import mask

    return mask(text, {name: "〔姓名〕" for name in names if name and len(name) >= 2})


@dataclass(frozen=True)
class PruneReport:
    """How many rows :func:`prune` deleted or masked (or would, with ``dry_run``)."""

    processed_messages_deleted: int
    deferred_messages_deleted: int
    dialogue_turns_masked: int
    dialogue_turns_deleted: int
    transcript_lines_masked: int
    transcript_lines_deleted: int
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def _count(session: Session, query: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _delete_batches(db: Database, model: Any, *where: Any, dry_run: bool) -> int:
    """Delete the rows of *model* matching *where*, a batch per transaction."""
    query = select(model.id).where(*where)
    if dry_run:
        with db.sessions() as session:
            return _count(session, query)
    done = 0
    while True:
        with db.begin() as session:
            ids = list(session.scalars(query.limit(BATCH)))
            if not ids:
                return done
            session.execute(delete(model).where(model.id.in_(ids)))
            done += len(ids)


def _mask_batches(
    db: Database,
    query: Select[Any, Any],
    apply: Callable[[Any, tuple[str, ...]], None],
    now: datetime,
    dry_run: bool,
) -> int:
    if dry_run:
        with db.sessions() as session:
            return _count(session, query)
    done = 0
    while True:
        with db.begin() as session:
            rows = list(session.execute(query.limit(BATCH)))
            if not rows:
                return done
            for row, display_name in rows:
                apply(row, (display_name,) if display_name else ())
                row.masked_at = now
            done += len(rows)


def _mask_turn(turn: DialogueTurn, names: tuple[str, ...]) -> None:
    turn.text = mask_text(turn.text, names)
    turn.tokens = []


def _mask_line(line: TranscriptLine, names: tuple[str, ...]) -> None:
    line.text = mask_text(line.text, names)


def prune(
    db: Database, policy: RetentionPolicy, now: datetime, *, dry_run: bool = False
) -> PruneReport:
    """Apply *policy* at *now*: delete what nothing needs any more, mask what is old."""

    def before(days: int) -> datetime:
        return now - timedelta(days=days)

    processed = _delete_batches(
        db,
        ProcessedMessage,
        ProcessedMessage.at < before(policy.processed_messages_days),
        dry_run=dry_run,
    )
    deferred = _delete_batches(
        db,
        DeferredMessage,
        DeferredMessage.done_at.is_not(None),
        DeferredMessage.done_at < before(policy.deferred_messages_days),
        dry_run=dry_run,
    )
    turns_deleted = _delete_batches(
        db,
        DialogueTurn,
        DialogueTurn.at < before(policy.dialogue_turns_days),
        dry_run=dry_run,
    )
    lines_deleted = _delete_batches(
        db,
        TranscriptLine,
        TranscriptLine.ticket_id.is_(None),
        TranscriptLine.at < before(policy.transcript_unattached_days),
        dry_run=dry_run,
    )
    mask_before = before(policy.mask_after_days)
    turns_masked = _mask_batches(
        db,
        select(DialogueTurn, ChannelIdentity.display_name)
        .join(ChannelIdentity, ChannelIdentity.id == DialogueTurn.channel_identity_id)
        .where(
            DialogueTurn.masked_at.is_(None),
            DialogueTurn.at < mask_before,
            DialogueTurn.at >= before(policy.dialogue_turns_days),  # not deleted above
        )
        .order_by(DialogueTurn.id),
        _mask_turn,
        now,
        dry_run,
    )
    lines_masked = _mask_batches(
        db,
        select(TranscriptLine, ChannelIdentity.display_name)
        .join(ChannelIdentity, ChannelIdentity.id == TranscriptLine.channel_identity_id)
        .where(
            TranscriptLine.masked_at.is_(None),
            TranscriptLine.at < mask_before,
            (TranscriptLine.ticket_id.is_not(None))
            | (TranscriptLine.at >= before(policy.transcript_unattached_days)),
        )
        .order_by(TranscriptLine.id),
        _mask_line,
        now,
        dry_run,
    )
    return PruneReport(
        processed_messages_deleted=processed,
        deferred_messages_deleted=deferred,
        dialogue_turns_masked=turns_masked,
        dialogue_turns_deleted=turns_deleted,
        transcript_lines_masked=lines_masked,
        transcript_lines_deleted=lines_deleted,
        dry_run=dry_run,
    )
