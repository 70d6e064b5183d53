"""Shared state (:mod:`handoff.shared_state`) in the database and in Redis, and the WeChat
access token fetched once however many clients (processes) ask for it at once.

The database store runs on SQLite and PostgreSQL (expiry by the test clock); the Redis store
on the real server at 127.0.0.1:6379 (skipped when none runs), keys under a prefix of the
test's own; the memory store (what a SQLite deployment, one process, uses) in the test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from bot.channels.wechat.client import WeChatApiClient
from handoff.db import Database
from handoff.shared_state import (
    DatabaseState,
    MemoryState,
    RedisState,
    SharedState,
    WeChatSessionStorage,
    shared_state_from_env,
)
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi


@pytest.fixture
def redis_state() -> Iterator[RedisState]:
    redis = pytest.importorskip("redis")
    state = RedisState("redis://127.0.0.1:6379/0", prefix=f"yxby-test-{uuid.uuid4().hex[:8]}:")
    try:
        state.client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis 未在 127.0.0.1:6379 运行")
    try:
        yield state
    finally:
        for key in state.client.scan_iter(f"{state.prefix}*"):
            state.client.delete(key)
        state.close()


@pytest.fixture(params=["database", "redis", "memory"])
def state(request: pytest.FixtureRequest, db: Database, clock: MovableClock) -> SharedState:
    if request.param == "redis":
        found: SharedState = request.getfixturevalue("redis_state")
        return found
    if request.param == "memory":
        return MemoryState(clock)
    return DatabaseState(db.sessions, clock)


def test_set_get_add_take_delete(state: SharedState) -> None:
    assert state.get("a") is None
    state.set("a", "1", 60)
    assert state.get("a") == "1"
    assert state.add("a", "2", 60) is False and state.get("a") == "1"
    state.set("a", "3", 60)  # set replaces
    assert state.get("a") == "3"
    assert state.take("a") == "3" and state.take("a") is None and state.get("a") is None
    assert state.add("b", "x", 60) is True and state.add("b", "y", 60) is False
    state.delete("b")
    assert state.get("b") is None and state.add("b", "z", 60) is True
    with pytest.raises(ValueError):
        state.get("k" * 201)


def test_settle_keeps_the_first_answer_and_writes_the_rest_only_for_the_winner(
    state: SharedState,
) -> None:
    state.set("rest", "old rest", 60)
    assert state.settle("answer", "A", 60, also={"rest": ("new rest", 60)}) == (True, "A")
    assert state.get("rest") == "new rest"
    # the loser learns the winner's answer, and its "also" is not applied
    assert state.settle("answer", "B", 60, also={"rest": None}) == (False, "A")
    assert state.get("rest") == "new rest"
    assert state.settle("other", "C", 60, also={"rest": None}) == (True, "C")
    assert state.get("rest") is None


def test_racing_settles_have_one_winner_whose_rest_is_kept(state: SharedState) -> None:
    results: list[tuple[bool, str | None]] = []
    start = threading.Barrier(6)

    def race() -> None:
        me = threading.current_thread().name
        start.wait()
        results.append(state.settle("answer", me, 60, also={"rest": (f"rest of {me}", 60)}))

    threads = [threading.Thread(target=race, name=f"p{n}") for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    (winner,) = [value for won, value in results if won]
    assert all(value == winner for _, value in results)  # every loser learns the answer
    assert state.get("answer") == winner and state.get("rest") == f"rest of {winner}"


def test_a_settle_on_postgresql_is_one_statement_committed_at_once(
    db: Database, clock: MovableClock, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("on SQLite one process serves: the state is in its memory")
    state = DatabaseState(db.sessions, clock)
    state.set("rest", "old", 60)
    seen: list[str] = []
    listen = lambda *a: seen.append(a[2])  # noqa: E731 - (conn, cursor, statement, …)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        assert state.settle("answer", "A", 60, also={"rest": None}) == (True, "A")
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert len(seen) == 1  # no BEGIN/SET/COMMIT of its own either: autocommit
    other = DatabaseState(db.sessions, clock)
    assert other.get("answer") == "A" and other.get("rest") is None


def test_values_expire_by_the_clock(db: Database, clock: MovableClock) -> None:
    state = DatabaseState(db.sessions, clock)
    state.set("a", "1", 30)
    assert state.add("lease", "me", 10) is True
    clock.advance(seconds=11)
    assert state.add("lease", "you", 10) is True  # an expired lease can be taken
    assert state.get("a") == "1"
    clock.advance(seconds=20)
    assert state.get("a") is None and state.take("a") is None
    assert state.settle("a", "2", 30) == (True, "2")
    clock.advance(seconds=31)
    assert state.prune() == 2  # "a" and "lease"
    assert state.get("lease") is None


def test_racing_adds_have_one_winner(state: SharedState) -> None:
    wins: list[bool] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        wins.append(state.add("race", threading.current_thread().name, 60))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(wins) == [False] * 7 + [True]


def test_wechat_session_storage_keeps_the_token_five_minutes_less(
    db: Database, clock: MovableClock
) -> None:
    state = DatabaseState(db.sessions, clock)
    storage = WeChatSessionStorage(state)
    storage.set("wx_access_token", "T", 7200)
    assert storage.get("wx_access_token") == "T"
    clock.advance(seconds=6899)
    assert storage.get("wx_access_token") == "T"
    clock.advance(seconds=2)
    assert storage.get("wx_access_token") is None  # fetched again before WeChat expires it
    assert storage.get("missing", "d") == "d"


def test_clients_sharing_state_fetch_the_token_once(state: SharedState) -> None:
    with FakeWeChatApi(appid="wx-shared", secret="s") as api:
        clients = [
            WeChatApiClient("wx-shared", "s", api_base=api.base_url, shared=state) for _ in range(6)
        ]
        tokens: list[str] = []
        start = threading.Barrier(len(clients))

        def ask(client: WeChatApiClient) -> None:
            start.wait()
            tokens.append(client.access_token)

        threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert tokens == ["TOKEN-1"] * 6
        assert api.token_requests == 1
        # WeChat refused the token: one client refreshes, the others use the new one
        for client in clients:
            client.refresh_access_token("TOKEN-1")
        assert {c.access_token for c in clients} == {"TOKEN-2"}
        assert api.token_requests == 2
        for client in clients:
            client.close()


def test_without_shared_state_the_client_keeps_wechatpys_own_expiry() -> None:
    with FakeWeChatApi(appid="wx-own", secret="s") as api:
        client = WeChatApiClient("wx-own", "s", api_base=api.base_url)
        assert client.access_token == "TOKEN-1" and client.access_token == "TOKEN-1"
        assert api.token_requests == 1
        client.expires_at = 1  # wechatpy's own clock says it expired
        assert client.access_token == "TOKEN-2"
        client.close()


def test_the_store_follows_the_deployment(db: Database, clock: MovableClock, backend: str) -> None:
    chosen = shared_state_from_env({}, lambda: db.sessions, clock)
    assert chosen.backend == ("memory" if backend == "sqlite" else "database")
    redis = shared_state_from_env(
        {"YXBY_REDIS_URL": "redis://127.0.0.1:6379/0"}, lambda: db.sessions, clock
    )
    assert redis.backend == "redis"
