"""The hot path of one WeChat text message, counted in database work (not timed).

A new message takes one read (is it a replay, is its answer owed or queued — one statement,
it used to be three) and the dialogue turn's write transaction; on PostgreSQL one more,
short, recording how it was answered (with the "全文" rest) for every process — on SQLite
one process serves and keeps that in memory. On SQLite the read never takes the write lock.
The handoff expiry in every turn looks at the table only when a request can be due. A retry
of the same MsgId in the same process touches the database not at all.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from bot.app import App
from bot.channels.wechat import WeChatAdapter
from bot.server import ServerOptions, create_asgi
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer
from tests.test_wechat import APPID, SECRET, WeChatSide, make_config, message_xml

QUESTION = "企业可以打什么热线反映问题"


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


@contextlib.contextmanager
def counting(app: App) -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        head = " ".join(words[:2]).upper() if words[0].upper() == "BEGIN" else words[0].upper()
        seen[head] += 1
        if "FROM processed_message" in statement:
            seen["processed_message reads"] += 1
        if "FROM live_handoff" in statement:
            seen["live_handoff reads"] += 1

    event.listen(app.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(app.db.engine, "before_cursor_execute", count)


def test_one_message_is_one_read_and_one_write_transaction_on_sqlite(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi, backend: str
) -> None:
    adapter = WeChatAdapter(app, make_config(fake_api))
    options = ServerOptions(run_tick=False, run_worker=False)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LiveServer(create_asgi(app, [adapter], options)))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
        wechat = WeChatSide(http, make_config(fake_api).token, clock)
        wechat.text(QUESTION)  # warm: the first turn looks at the handoffs once
        users = [f"oHotPathUser{i:04d}xxxxxxxxxxxx" for i in range(10)]
        with counting(app) as seen:
            for i, user in enumerate(users):
                xml = message_xml("text", created=wechat.now(), user=user, msg_id=900 + i,
                                  Content=QUESTION)  # fmt: skip
                http.post("/wechat", params=wechat.signed_params(), content=xml)
        per = {k: v / len(users) for k, v in seen.items()}
        assert per["processed_message reads"] == 1  # the replay check, once
        assert per.get("live_handoff reads", 0) == 0  # no request can be due yet
        if backend == "sqlite":
            assert per["BEGIN IMMEDIATE"] == 1  # the turn
            assert per["BEGIN DEFERRED"] == 1  # the read takes no write lock
        # the turn of a new user writes each of its rows once, with Core statements: the
        # identity (INSERT … ON CONFLICT DO NOTHING RETURNING, no savepoint), its
        # conversation, the turn log, the transcript lines (one executemany) and the
        # processed message with its replies; it reads the commissioner binding and the
        # identity in one statement, and releases the pushes held for the user in one
        # UPDATE (of no row here). It used to take 22 statements on SQLite (two
        # savepoints, three UPDATEs of rows it had just inserted).
        assert per.get("SAVEPOINT", 0) == 0
        assert per["UPDATE"] == 1  # the held pushes
        assert per["SELECT"] == 2  # the read above; binding and identity together
        assert per["INSERT"] == 5
        # PostgreSQL records how it was answered for every process: one statement in
        # autocommit (it was a transaction of five round trips: BEGIN, SET LOCAL, INSERT,
        # DELETE, COMMIT)
        assert per.get("WITH", 0) == (0 if backend == "sqlite" else 1)
        assert per.get("SET", 0) == 0
        statements = sum(v for k, v in per.items() if k.split()[0].isupper())
        assert statements == (10 if backend == "sqlite" else 9)

        # a retry of a MsgId this process answered: no database work at all
        xml = message_xml("text", created=wechat.now(), user=users[0], msg_id=900,
                          Content=QUESTION)  # fmt: skip
        with counting(app) as again:
            response = http.post("/wechat", params=wechat.signed_params(), content=xml)
        assert response.status_code == 200 and "12345" in response.text
        assert sum(again.values()) == 0

        # once the soonest request could be due, the turn looks again
        clock.advance(minutes=app.dialogue_settings.handoff_wait_minutes + 1)
        with counting(app) as later:
            wechat.text(QUESTION)
        assert later["live_handoff reads"] >= 1
