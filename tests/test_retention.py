"""The retention policy: old message ids and turns go, old personal data is masked, what the
assessment counts stays — on both backends, with the clock injected, idempotent, and a dry
run that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from bot.cli import main
from handoff.conversations import (
    DeferredMessage,
    DialogueTurn,
    ProcessedMessage,
    TurnOutcome,
    get_or_create_identity,
)
from handoff.db import Database
from handoff.models import Direction, TranscriptLine
from handoff.retention import RetentionPolicy, mask_text, prune
from tests.conftest import START

POLICY = RetentionPolicy(
    processed_messages_days=7,
    deferred_messages_days=7,
    mask_after_days=180,
    dialogue_turns_days=1095,
    transcript_unattached_days=365,
)
PHONE = "13812345678"
NAME = "王小明"


def days_ago(n: int) -> datetime:
    return START - timedelta(days=n)


def test_mask_text_removes_what_patterns_and_names_find() -> None:
    text = f"我是{NAME}，电话{PHONE}，邮箱 wang@example.com，卡号 6222021234567890123，发票怎么开"
    masked = mask_text(text, (NAME,))
    for gone in (NAME, PHONE, "wang@example.com", "6222021234567890123"):
        assert gone not in masked
    assert "发票怎么开" in masked and "〔电话〕" in masked and "〔姓名〕" in masked
    assert mask_text(masked, (NAME,)) == masked  # masking twice changes nothing


@pytest.fixture
def history(db: Database) -> dict[str, int]:
    """Rows of every kind at ages either side of each limit."""
    with db.begin() as session:
        person = get_or_create_identity(session, "wechat", "oRetention000000000000000001")
        person.display_name = NAME
        session.flush()
        for n, age in enumerate((1, 6, 8, 30)):
            session.add(ProcessedMessage(channel="wechat", msg_id=f"m{n}", at=days_ago(age)))
        for n, (age, done) in enumerate(((8, True), (8, False), (2, True))):
            session.add(
                DeferredMessage(
                    channel="wechat", msg_id=f"d{n}", user_key=person.user_key,
                    message={"text": "你好"}, received_at=days_ago(age),
                    done_at=days_ago(age) if done else None,
                )
            )  # fmt: skip
        for age in (10, 200, 1200):
            session.add(
                DialogueTurn(
                    channel_identity_id=person.id, at=days_ago(age), state="idle",
                    text=f"{NAME}的电话{PHONE}，发票怎么开", tokens=["发票", PHONE],
                    hits=[{"id": "tax-invoice", "score": 9.0}], action="answer",
                    entry_id="tax-invoice", outcome=TurnOutcome.ANSWERED,
                )
            )  # fmt: skip
        for age in (10, 200, 400):
            session.add(
                TranscriptLine(
                    channel_identity_id=person.id, at=days_ago(age),
                    direction=Direction.IN, text=f"电话 {PHONE}",
                )
            )  # fmt: skip
    return {}


def counts(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (ProcessedMessage, DeferredMessage, DialogueTurn, TranscriptLine)
        }


def test_prune_deletes_masks_and_keeps(db: Database, history: dict[str, int]) -> None:
    before = counts(db)
    dry = prune(db, POLICY, START, dry_run=True)
    assert counts(db) == before  # a dry run changes nothing
    report = prune(db, POLICY, START)
    assert report.as_dict() | {"dry_run": True} == dry.as_dict()
    assert report.processed_messages_deleted == 2  # 8 and 30 days old
    assert report.deferred_messages_deleted == 1  # delivered 8 days ago (not the open one)
    assert report.dialogue_turns_deleted == 1  # 1200 days old
    assert report.dialogue_turns_masked == 1  # 200 days old
    assert report.transcript_lines_deleted == 1  # 400 days, no ticket
    assert report.transcript_lines_masked == 1  # 200 days
    assert counts(db) == {"processed_message": 2, "deferred_message": 2,
                          "dialogue_turn": 2, "transcript_line": 2}  # fmt: skip
    with db.sessions() as session:
        old, recent = session.scalars(select(DialogueTurn).order_by(DialogueTurn.at)).all()
        assert PHONE not in old.text and NAME not in old.text and "发票怎么开" in old.text
        assert old.tokens == [] and old.masked_at is not None
        # what the assessment and the editors count is kept
        assert (old.entry_id, old.outcome, old.hits[0]["id"]) == (
            "tax-invoice", TurnOutcome.ANSWERED, "tax-invoice"
        )  # fmt: skip
        assert PHONE in recent.text and recent.masked_at is None
        lines = session.scalars(select(TranscriptLine).order_by(TranscriptLine.at)).all()
        assert PHONE not in lines[0].text and PHONE in lines[1].text
    again = prune(db, POLICY, START)
    assert sum(v for k, v in again.as_dict().items() if k != "dry_run") == 0  # idempotent


def test_yxby_db_prune(db_url: str, db: Database, history: dict[str, int]) -> None:
    runner = CliRunner()
    run: Callable[..., Result] = lambda *a: runner.invoke(  # noqa: E731
        main, ["db", "prune", *a], env={"YXBY_DATABASE_URL": db_url}
    )
    dry = run("--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "试运行" in dry.output
    assert counts(db)["processed_message"] == 4
    done = run()
    assert done.exit_code == 0, done.output
    # the command runs on the real clock: START is at least a week ago, so every id goes
    assert "删除过期的消息编号：4 条" in done.output
    assert counts(db)["processed_message"] == 0
