"""Small values every ``yxby serve`` process sees: :class:`SharedState`.

Several worker processes answer one WeChat account, so what used to live in one process's
memory lives here: the access token (one fetch for all of them), the unsent rest of a long
answer ("全文"), and who answers a MsgId and how (so a retry that reaches another process
is not answered twice). Each value is a string with a time to live.

Three stores, one interface: :class:`DatabaseState` (table ``shared_value`` in the app's
PostgreSQL database), :class:`RedisState` (``YXBY_REDIS_URL``) and, on SQLite, where one
process serves, :class:`MemoryState`. Every operation is atomic — ``add`` is "insert unless
a live value is there", ``take`` is "delete and return" — so two processes racing for a
key get one winner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from handoff.db import READ_ONLY_OPTION
from handoff.models import SharedValue
from yxby.errors import ConfigError

__all__ = [
    "REDIS_PREFIX_ENV",
    "REDIS_URL_ENV",
    "DatabaseState",
    "MemoryState",
    "RedisState",
    "SharedState",
    "WeChatSessionStorage",
    "shared_state_from_env",
]

REDIS_URL_ENV = "YXBY_REDIS_URL"
REDIS_PREFIX_ENV = "YXBY_REDIS_PREFIX"
DEFAULT_PREFIX = "yxby:"
MAX_KEY = 200


class SharedState(Protocol):
    """A key/value store with expiry shared by every process of one deployment."""

    backend: str

    def get(self, key: str) -> str | None:
        """The live value of *key*, or ``None``."""
        ...

    def set(self, key: str, value: str, ttl: float) -> None:
        """Store *value* under *key* for *ttl* seconds (replacing what was there)."""
        ...

    def add(self, key: str, value: str, ttl: float) -> bool:
        """Store *value* for *ttl* seconds unless *key* has a live value; True if stored."""
        ...

    def take(self, key: str) -> str | None:
        """Remove *key* and return its live value (``None`` when there was none)."""
        ...

    def settle(
        self,
        key: str,
        value: str,
        ttl: float,
        *,
        also: Mapping[str, tuple[str, float] | None] | None = None,
    ) -> tuple[bool, str | None]:
        """:meth:`add` *value*; when stored, also set (``(value, ttl)``) or delete (``None``)
        the keys of *also*, atomically with it. ``(True, value)`` when stored, else
        ``(False, the live value that was there first)``."""
        ...

    def delete(self, key: str) -> None:
        """Remove *key*."""
        ...

    def prune(self) -> int:
        """Forget expired values (a store that expires them itself returns 0)."""
        ...


def _check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"shared-state key must be 1–{MAX_KEY} characters: {key[:40]!r}")
    return key


class DatabaseState:
    """:class:`SharedState` in the ``shared_value`` table; expiry by *clock*.

    Every operation is one or two prepared Core statements on a pooled connection (no ORM
    session: this is on every message's path). On PostgreSQL these short-lived values are
    committed without waiting for the WAL flush (``synchronous_commit = off``): a crash of
    the database server may forget the last few of them, never make them inconsistent; what
    must last (an owed answer, with :meth:`settle_in`) is committed with its own
    transaction's durability.
    """

    backend = "database"

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock
        self.engine: Engine = sessions.kw["bind"]
        dialect = self.engine.dialect.name
        self._lazy_commit = dialect == "postgresql"
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        t: Any = SharedValue.__table__
        new = insert(t).values(key=bindparam("k"), value=bindparam("v"), expires_at=bindparam("e"))
        fresh = {"value": new.excluded.value, "expires_at": new.excluded.expires_at}
        self._upsert_stmt = new.on_conflict_do_update(index_elements=[t.c.key], set_=fresh)
        self._add_stmt = new.on_conflict_do_update(
            index_elements=[t.c.key],
            set_=fresh,
            where=t.c.expires_at <= bindparam("now"),  # only an expired value is replaced
        ).returning(t.c.key)
        self._get_stmt = select(t.c.value).where(
            t.c.key == bindparam("k"), t.c.expires_at > bindparam("now")
        )
        self._value_stmt = select(t.c.value).where(t.c.key == bindparam("k"))
        self._take_stmt = (
            delete(t).where(t.c.key == bindparam("k")).returning(t.c.value, t.c.expires_at)
        )
        self._delete_stmt = delete(t).where(t.c.key == bindparam("k"))
        self._prune_stmt = delete(t).where(t.c.expires_at <= bindparam("now"))

    @contextmanager
    def _writer(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self._lazy_commit:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def _until(self, ttl: float) -> tuple[datetime, datetime]:
        now = self.clock()
        return now, now + timedelta(seconds=max(ttl, 0.001))

    def get(self, key: str) -> str | None:
        with self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
            value: str | None = conn.execute(
                self._get_stmt, {"k": _check_key(key), "now": self.clock()}
            ).scalar()
            return value

    def set(self, key: str, value: str, ttl: float) -> None:
        _, until = self._until(ttl)
        with self._writer() as conn:
            conn.execute(self._upsert_stmt, {"k": _check_key(key), "v": value, "e": until})

    def add(self, key: str, value: str, ttl: float) -> bool:
        now, until = self._until(ttl)
        params = {"k": _check_key(key), "v": value, "e": until, "now": now}
        with self._writer() as conn:
            return conn.execute(self._add_stmt, params).first() is not None

    def take(self, key: str) -> str | None:
        now = self.clock()
        with self._writer() as conn:
            row = conn.execute(self._take_stmt, {"k": _check_key(key)}).first()
        if row is None or row.expires_at <= now:
            return None
        value: str = row.value
        return value

    def delete(self, key: str) -> None:
        with self._writer() as conn:
            conn.execute(self._delete_stmt, {"k": _check_key(key)})

    def settle(
        self,
        key: str,
        value: str,
        ttl: float,
        *,
        also: Mapping[str, tuple[str, float] | None] | None = None,
    ) -> tuple[bool, str | None]:
        if self._lazy_commit and len(also or {}) <= 1:
            return self._settle_at_once(key, value, ttl, also or {})
        with self._writer() as conn:
            return self._settle(conn, key, value, ttl, also)

    def _settle_at_once(
        self, key: str, value: str, ttl: float, also: Mapping[str, tuple[str, float] | None]
    ) -> tuple[bool, str | None]:
        """:meth:`settle` on PostgreSQL in one statement and one round trip (it is on every
        message's path; the transaction took five): autocommit, the commit not waiting for
        the WAL flush (``set_config`` local to the statement's own transaction), and the
        other key written or deleted only when this one was won."""
        now, until = self._until(ttl)
        params: dict[str, Any] = {"k": _check_key(key), "v": value, "e": until, "now": now}
        kind = "none"
        for other, item in also.items():
            params["k2"] = _check_key(other)
            if item is None:
                kind = "delete"
            else:
                kind = "set"
                params["v2"], params["e2"] = item[0], now + timedelta(seconds=item[1])
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.execute(_SETTLE_AT_ONCE[kind], params).scalar():
                return True, value
            first: str | None = conn.execute(self._value_stmt, {"k": key}).scalar()
            return False, first

    def settle_in(
        self,
        session: Session,
        key: str,
        value: str,
        ttl: float,
        *,
        also: Mapping[str, tuple[str, float] | None] | None = None,
    ) -> tuple[bool, str | None]:
        """:meth:`settle` in the caller's transaction (so with the caller's other writes)."""
        return self._settle(session.connection(), key, value, ttl, also)

    def _settle(
        self,
        conn: Connection,
        key: str,
        value: str,
        ttl: float,
        also: Mapping[str, tuple[str, float] | None] | None,
    ) -> tuple[bool, str | None]:
        now, until = self._until(ttl)
        params = {"k": _check_key(key), "v": value, "e": until, "now": now}
        if conn.execute(self._add_stmt, params).first() is None:
            first: str | None = conn.execute(self._value_stmt, {"k": key}).scalar()
            return False, first
        for other, item in (also or {}).items():
            if item is None:
                conn.execute(self._delete_stmt, {"k": _check_key(other)})
            else:
                later = now + timedelta(seconds=item[1])
                conn.execute(self._upsert_stmt, {"k": _check_key(other), "v": item[0], "e": later})
        return True, value

    def prune(self) -> int:
        with self._writer() as conn:
            result: Any = conn.execute(self._prune_stmt, {"now": self.clock()})
            return int(result.rowcount or 0)


def _settle_statements() -> dict[str, Any]:
    t: Any = SharedValue.__table__
    won = f"""
        WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true)),
        won AS (
            INSERT INTO {t.name} (key, value, expires_at) SELECT :k, :v, :e FROM lazy
            ON CONFLICT (key) DO UPDATE
                SET value = excluded.value, expires_at = excluded.expires_at
                WHERE {t.name}.expires_at <= :now
            RETURNING key
        )"""
    other = {
        "none": "",
        "delete": f", other AS (DELETE FROM {t.name} WHERE key = :k2 AND EXISTS (SELECT FROM won))",
        "set": f""", other AS (
            INSERT INTO {t.name} (key, value, expires_at) SELECT :k2, :v2, :e2 FROM won
            ON CONFLICT (key) DO UPDATE
                SET value = excluded.value, expires_at = excluded.expires_at)""",
    }
    binds = [bindparam(n, type_=t.c.expires_at.type) for n in ("e", "now")]
    statements = {}
    for kind, tail in other.items():
        statement = text(won + tail + " SELECT EXISTS (SELECT FROM won)")
        extra = [bindparam("e2", type_=t.c.expires_at.type)] if kind == "set" else []
        statements[kind] = statement.bindparams(*binds, *extra)
    return statements


_SETTLE_AT_ONCE = _settle_statements()
"""PostgreSQL's one-statement settle, by what it does to the other key."""


class MemoryState:
    """:class:`SharedState` in this process's memory, for SQLite: there one process serves
    (``--workers`` > 1 is refused), so sharing would only cost a write transaction per
    message. Expiry by *clock*; thread-safe."""

    backend = "memory"

    def __init__(self, clock: Callable[[], datetime], limit: int = 100_000) -> None:
        self.clock = clock
        self.limit = limit
        self._values: dict[str, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: datetime) -> str | None:
        item = self._values.get(_check_key(key))
        if item is None or item[1] <= now:
            return None
        return item[0]

    def _put(self, key: str, value: str, until: datetime) -> None:
        self._values[_check_key(key)] = (value, until)
        if len(self._values) > self.limit:  # forget the expired, then the oldest
            now = self.clock()
            for old in [k for k, (_, u) in self._values.items() if u <= now]:
                del self._values[old]
            while len(self._values) > self.limit:
                del self._values[next(iter(self._values))]

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key, self.clock())

    def set(self, key: str, value: str, ttl: float) -> None:
        with self._lock:
            self._put(key, value, self.clock() + timedelta(seconds=ttl))

    def add(self, key: str, value: str, ttl: float) -> bool:
        return self.settle(key, value, ttl)[0]

    def take(self, key: str) -> str | None:
        with self._lock:
            value = self._live(key, self.clock())
            self._values.pop(key, None)
            return value

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(_check_key(key), None)

    def settle(
        self,
        key: str,
        value: str,
        ttl: float,
        *,
        also: Mapping[str, tuple[str, float] | None] | None = None,
    ) -> tuple[bool, str | None]:
        with self._lock:
            now = self.clock()
            first = self._live(key, now)
            if first is not None:
                return False, first
            self._put(key, value, now + timedelta(seconds=ttl))
            for other, item in (also or {}).items():
                if item is None:
                    self._values.pop(_check_key(other), None)
                else:
                    self._put(other, item[0], now + timedelta(seconds=item[1]))
            return True, value

    def prune(self) -> int:
        with self._lock:
            now = self.clock()
            old = [k for k, (_, until) in self._values.items() if until <= now]
            for key in old:
                del self._values[key]
            return len(old)


class RedisState:
    """:class:`SharedState` in Redis (keys under *prefix*; Redis expires them itself)."""

    backend = "redis"

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        import redis

        try:
            self.client: Any = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            )
        except ValueError as exc:
            raise ConfigError(f"无法解析：{exc}", key=REDIS_URL_ENV) from None
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + _check_key(key)

    @staticmethod
    def _ms(ttl: float) -> int:
        return max(1, int(ttl * 1000))

    def get(self, key: str) -> str | None:
        value: str | None = self.client.get(self._k(key))
        return value

    def set(self, key: str, value: str, ttl: float) -> None:
        self.client.set(self._k(key), value, px=self._ms(ttl))

    def add(self, key: str, value: str, ttl: float) -> bool:
        return bool(self.client.set(self._k(key), value, px=self._ms(ttl), nx=True))

    def take(self, key: str) -> str | None:
        value: str | None = self.client.getdel(self._k(key))
        return value

    def delete(self, key: str) -> None:
        self.client.delete(self._k(key))

    def settle(
        self,
        key: str,
        value: str,
        ttl: float,
        *,
        also: Mapping[str, tuple[str, float] | None] | None = None,
    ) -> tuple[bool, str | None]:
        if not self.add(key, value, ttl):
            first: str | None = self.client.get(self._k(key))
            return False, first
        if also:
            pipe = self.client.pipeline(transaction=True)
            for other, item in also.items():
                if item is None:
                    pipe.delete(self._k(other))
                else:
                    pipe.set(self._k(other), item[0], px=self._ms(item[1]))
            pipe.execute()
        return True, value

    def prune(self) -> int:
        return 0

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def shared_state_from_env(
    env: Mapping[str, str],
    sessions: Callable[[], sessionmaker[Session]],
    clock: Callable[[], datetime],
) -> SharedState:
    """Redis when ``YXBY_REDIS_URL`` is set in *env*, else the database — PostgreSQL's
    ``shared_value`` table, or on SQLite (one server process) this process's memory.
    *sessions* is called only without Redis."""
    url = (env.get(REDIS_URL_ENV) or "").strip()
    if url:
        prefix = env.get(REDIS_PREFIX_ENV) or DEFAULT_PREFIX
        return RedisState(url, prefix)
    factory = sessions()
    if factory.kw["bind"].dialect.name == "sqlite":
        return MemoryState(clock)
    return DatabaseState(factory, clock)


class WeChatSessionStorage:
    """wechatpy's ``SessionStorage`` interface over a :class:`SharedState`.

    wechatpy keeps the access token in its session (``{appid}_access_token``); with this
    storage every process reads the one token. A value without a TTL is kept two hours (the
    life of a WeChat access token). A token is kept *margin* seconds less than WeChat says
    it lives, so it is fetched anew before it expires rather than after a refusal.
    """

    DEFAULT_TTL = 7200.0

    def __init__(self, state: SharedState, prefix: str = "wechatpy:", margin: float = 300.0):
        self.state = state
        self.prefix = prefix
        self.margin = margin

    def get(self, key: str, default: Any = None) -> Any:
        value = self.state.get(self.prefix + key)
        return default if value is None else value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if value is None:
            self.delete(key)
            return
        life = float(ttl or self.DEFAULT_TTL)
        self.state.set(self.prefix + key, str(value), max(life - self.margin, min(life, 60.0)))

    def delete(self, key: str) -> None:
        self.state.delete(self.prefix + key)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)
