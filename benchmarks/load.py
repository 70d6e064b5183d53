"""WeChat load on 127.0.0.1: throughput, p50/p99, errors, lost and duplicated answers.

The real ``yxby serve`` (a subprocess; ``--workers N``) answers signed WeChat text messages
sent by two bounded generators, with the fake WeChat API of ``tests/fakes`` receiving the
pushes. Every message comes from a user of its own with a MsgId of its own, so each one's
fate is known exactly afterwards: answered passively (no push expected), or acknowledged
``success`` (one push expected). After each phase the harness waits (bounded) for the
pushes and counts:

* ``errors`` — anything but HTTP 200 (or a broken connection, or a message the open-loop
  generator could not even send because its in-flight bound was reached);
* ``lost`` — acknowledged with ``success`` but never pushed;
* ``duplicated`` — pushes beyond the one expected (or a push after a passive answer).

and ``cpu ms/msg``: CPU time of the server's processes per answered message — on a machine
shared with other work the throughput says little, this says what a core can carry
(about ``1000 / cpu ms/msg`` messages per second per core).

Phases, for each configuration (SQLite, PostgreSQL with one process, with two):

* closed loop — ``concurrency`` senders, each sending its next message when the previous
  one was answered, for ``duration`` seconds: the sustained throughput;
* open loop — messages offered at ``rate`` per second whatever the answers do (latency
  counts from when a message was due, so a stalled server cannot hide its queue), at most
  ``max_inflight`` outstanding.

The client speaks HTTP/1.1 over asyncio streams with keep-alive (one connection per closed-
loop sender; a bounded pool in the open loop) so that it costs little CPU next to the
server on the same 2-core machine. The server logs at ``warning`` (no access log).

    python -m benchmarks.load                       # all three configurations, ~3 minutes
    python -m benchmarks.load --configs pg2 --duration 30
    python -m benchmarks.load --root /tmp/base      # the code of another checkout
    python -m benchmarks.run --only load            # the same, from the benchmark runner

PostgreSQL comes from ``YXBY_BENCH_DATABASE_URL`` (else ``YXBY_TEST_DATABASE_URL``); each
configuration gets a schema of its own, dropped afterwards. Without it the PostgreSQL
configurations are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import table
from yxby.paths import PROJECT_ROOT

__all__ = ["main", "report", "run"]

TOKEN = "yxby-load-token"
APPID = "wx0123456789abcdef"
SECRET = "yxby-load-secret"
ACCOUNT = "gh_yxby00000001"
QUESTIONS = (
    "企业可以打什么热线反映问题",
    "个体工商户怎么办理营业执照",
    "高新技术企业认定需要什么条件",
    "社保怎么转移",
    "你好",
)
CONFIGS = {"sqlite": ("sqlite", 1), "pg1": ("postgresql", 1), "pg2": ("postgresql", 2)}


KEEP_ALIVE_REUSE = 4.0
"""Seconds an idle open-loop connection is reused for (uvicorn closes them after 5)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ----------------------------------------------------------------------------- the client


class _Connection:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.perf_counter()

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        data = await self.reader.readexactly(length) if length else b""
        self.used = time.perf_counter()
        return status, data

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Tally:
    """What one phase sent and got back."""

    latencies: list[float] = field(default_factory=list)
    passive: set[str] = field(default_factory=set)  # users answered in the response
    acked: set[str] = field(default_factory=set)  # users answered "success" (push expected)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    started: float = 0.0
    ended: float = 0.0


class _Messages:
    """Signed WeChat text messages, each from a new user with a new MsgId."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0

    def next(self) -> tuple[str, str, bytes]:
        self.seq += 1
        n = self.seq
        user = f"oLoad{self.run_id}{n:09d}"
        now = str(int(time.time()))
        nonce = f"{n}"
        signature = hashlib.sha1("".join(sorted((TOKEN, now, nonce))).encode()).hexdigest()
        target = f"/wechat?signature={signature}&timestamp={now}&nonce={nonce}&openid={user}"
        text = QUESTIONS[n % len(QUESTIONS)]
        body = (
            f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{now}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{10**15 + n}</MsgId></xml>"
        ).encode()
        return user, target, body


async def _send(conn: _Connection, msgs: _Messages, tally: _Tally, due: float) -> bool:
    """Send one message on *conn*; False when the connection broke."""
    user, target, body = msgs.next()
    tally.sent += 1
    try:
        status, data = await conn.post(target, body)
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        tally.errors[type(exc).__name__] += 1
        return False
    tally.latencies.append(time.perf_counter() - due)
    if status != 200:
        tally.errors[f"HTTP {status}"] += 1
    elif data == b"success":
        tally.acked.add(user)
    else:
        tally.passive.add(user)
    return True


async def _closed_loop(port: int, msgs: _Messages, senders: int, duration: float) -> _Tally:
    tally = _Tally()
    deadline = time.perf_counter() + duration

    async def sender() -> None:
        conn = await _Connection.open(port)
        try:
            while time.perf_counter() < deadline:
                if not await _send(conn, msgs, tally, time.perf_counter()):
                    conn.close()
                    conn = await _Connection.open(port)
        finally:
            conn.close()

    tally.started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    tally.ended = time.perf_counter()
    return tally


async def _open_loop(
    port: int, msgs: _Messages, rate: float, duration: float, max_inflight: int
) -> _Tally:
    tally = _Tally()
    idle: list[_Connection] = []
    inflight = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        nonlocal inflight
        # a client does not reuse a connection the server is about to close: uvicorn ends
        # keep-alive connections idle for 5 s (those at the bottom of the idle stack)
        while idle and time.perf_counter() - idle[0].used > KEEP_ALIVE_REUSE:
            idle.pop(0).close()
        conn = idle.pop() if idle else await _Connection.open(port)
        try:
            if await _send(conn, msgs, tally, due):
                idle.append(conn)
            else:
                conn.close()
        finally:
            inflight -= 1

    start = time.perf_counter()
    tally.started = start
    total = int(rate * duration)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight >= max_inflight:
            tally.sent += 1
            tally.errors["generator bound reached"] += 1
            continue
        inflight += 1
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    tally.ended = time.perf_counter()
    for conn in idle:
        conn.close()
    return tally


# ----------------------------------------------------------------------------- the server


def _pg_base() -> str | None:
    return os.environ.get("YXBY_BENCH_DATABASE_URL") or os.environ.get("YXBY_TEST_DATABASE_URL")


@contextlib.contextmanager
def _database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh database URL of *backend* (a PostgreSQL schema of its own, dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'load.sqlite3'}"
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = _pg_base()
    assert base is not None
    schema = f"yxby_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def _yxby(root: Path) -> list[str]:
    return [sys.executable, "-c", "from bot.cli import main; main()"]


class _Server:
    """``yxby serve --workers N`` of the code in *root*, on a free port."""

    def __init__(
        self, root: Path, env: dict[str, str], workers: int, log: Path, level: str = "warning"
    ) -> None:
        self.port = _free_port()
        self.workers = workers
        self.log = log
        args = [*_yxby(root), "serve", "--port", str(self.port), "--log-level", level]
        if workers > 1:
            args += ["--workers", str(workers)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def health(self) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise RuntimeError(f"yxby serve stopped: {self.log.read_text('utf-8')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                found: dict[str, Any] = json.loads(r.read())
                return found
        except OSError:
            return None

    def wait_ready(self, timeout: float = 180.0) -> None:
        pids: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.health()
            if found and found.get("channels", {}).get("wechat", {}).get("status") == "ok":
                pids.add(int(found.get("pid", 0)))
                if len(pids) >= self.workers:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"yxby serve not ready: {self.log.read_text('utf-8')[-2000:]}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes."""
        import psutil

        total = 0.0
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
        except psutil.Error:
            pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _backlog(url: str) -> int:
    """Pushes still to be made: pending outbox messages and answers still owed."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            pending = conn.execute(
                text("SELECT count(*) FROM outbox_message WHERE status = 'pending'")
            ).scalar()
            owed = conn.execute(
                text("SELECT count(*) FROM deferred_message WHERE done_at IS NULL")
            ).scalar()
        return int(pending or 0) + int(owed or 0)
    finally:
        engine.dispose()


def _pushes_settle(api: Any, url: str, owed: set[str], timeout: float) -> None:
    """Wait until every user in *owed* got a push, or nothing is left to push (then a
    missing push is lost, not late), and a second more for duplicates; at most *timeout*.

    Counted per user, not in total: messages that got a ``503`` (not stored in time) may
    still be stored a moment later and pushed, so the total of pushes can reach the number
    expected while acknowledged answers are still queued.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pushed = {m["touser"] for m in list(api.sent)}
        if owed <= pushed or _backlog(url) == 0:
            break
        time.sleep(0.5)
    time.sleep(1.0)


def _per(cpu: float, tally: _Tally) -> float:
    """Server CPU milliseconds per answered message."""
    answered = len(tally.passive) + len(tally.acked)
    return round(cpu * 1000 / answered, 2) if answered else 0.0


def _outcome(tally: _Tally, pushed: Counter[str]) -> dict[str, Any]:
    lost_users = sorted(user for user in tally.acked if pushed[user] == 0)
    lost = len(lost_users)
    duplicated = sum(max(0, pushed[user] - 1) for user in tally.acked)
    duplicated += sum(pushed[user] for user in tally.passive)
    span = max(tally.ended - tally.started, 1e-9)
    answered = len(tally.passive) + len(tally.acked)
    return {
        "sent": tally.sent,
        "answered": answered,
        "passive": len(tally.passive),
        "pushed": len(tally.acked),
        "throughput": round(answered / span, 1),
        "p50_ms": round(_pct(tally.latencies, 50) * 1000, 1),
        "p99_ms": round(_pct(tally.latencies, 99) * 1000, 1),
        "max_ms": round(max(tally.latencies, default=0.0) * 1000, 1),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "lost": lost,
        "lost_users": lost_users[:20],
        "duplicated": duplicated,
    }


def _run_config(
    name: str,
    root: Path,
    *,
    duration: float,
    concurrency: int,
    rate: float,
    max_inflight: int,
    warmup: int,
    keep: Path | None = None,
    log_level: str = "warning",
    threads: int | None = None,
) -> dict[str, Any]:
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.fakes.wechat_api import FakeWeChatApi

    backend, workers = CONFIGS[name]
    result: dict[str, Any] = {"backend": backend, "workers": workers}
    with (
        tempfile.TemporaryDirectory(prefix="yxby-load-") as tmp,
        _database(backend, Path(tmp)) as url,
        FakeWeChatApi(appid=APPID, secret=SECRET) as api,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env |= {
            "PYTHONPATH": str(root),
            "YXBY_DATABASE_URL": url,
            "YXBY_DATA_DIR": str(Path(tmp) / "data"),
            "YXBY_WECHAT_TOKEN": TOKEN,
            "YXBY_WECHAT_APPID": APPID,
            "YXBY_WECHAT_SECRET": SECRET,
            "YXBY_WECHAT_API_BASE": api.base_url,
        }
        if threads is not None:
            env["YXBY_THREADS"] = str(threads)
        subprocess.run(
            [*_yxby(root), "db", "upgrade"], cwd=root, env=env, check=True, capture_output=True
        )
        server = _Server(root, env, workers, Path(tmp) / "serve.log", log_level)
        try:
            server.wait_ready()
            run_id = uuid.uuid4().hex[:6]

            cpu: list[float] = []

            async def phases() -> tuple[_Tally, _Tally]:
                await _closed_loop(server.port, _Messages(run_id + "w"), 10, 0.0 + warmup / 50)
                cpu.append(server.cpu_seconds())
                closed = await _closed_loop(server.port, _Messages(run_id + "c"), concurrency,
                                            duration)  # fmt: skip
                cpu.append(server.cpu_seconds())
                await asyncio.sleep(1.0)
                cpu.append(server.cpu_seconds())
                opened = await _open_loop(server.port, _Messages(run_id + "o"), rate, duration,
                                          max_inflight)  # fmt: skip
                cpu.append(server.cpu_seconds())
                return closed, opened

            closed, opened = asyncio.run(phases())
            _pushes_settle(api, url, closed.acked | opened.acked, timeout=300.0)
            result["backlog_left"] = _backlog(url)
            pushed: Counter[str] = Counter(m["touser"] for m in list(api.sent))
            result["closed"] = _outcome(closed, pushed) | {
                "concurrency": concurrency,
                "server_cpu_ms_per_msg": _per(cpu[1] - cpu[0], closed),
            }
            result["open"] = _outcome(opened, pushed) | {
                "rate": rate,
                "server_cpu_ms_per_msg": _per(cpu[3] - cpu[2], opened),
            }
            result["token_fetches"] = api.token_requests
        finally:
            server.stop()
            log = server.log.read_text("utf-8", errors="replace")
            result["server_errors_logged"] = log.count("ERROR") + log.count("Traceback")
            if keep is not None:
                import shutil

                shutil.copytree(tmp, keep / name, dirs_exist_ok=True)
    return result


def run(
    *,
    configs: Sequence[str] = tuple(CONFIGS),
    duration: float = 15.0,
    concurrency: int = 100,
    rate: float = 150.0,
    max_inflight: int = 1000,
    warmup: int = 200,
    root: Path = PROJECT_ROOT,
    keep: Path | None = None,
    log_level: str = "warning",
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the chosen configurations; a dict of their figures.

    With *keep*, each configuration's folder (server log; the SQLite file) is copied there.
    """
    out: dict[str, Any] = {
        "duration_s": duration,
        "concurrency": concurrency,
        "rate": rate,
        "root": str(root),
        "threads": threads,
        "configs": {},
    }
    for name in configs:
        if CONFIGS[name][0] == "postgresql" and not _pg_base():
            out["configs"][name] = {"skipped": "YXBY_BENCH_DATABASE_URL / YXBY_TEST_DATABASE_URL"}
            continue
        print(f"  {name} …", flush=True)
        try:
            out["configs"][name] = _run_config(
                name,
                root,
                duration=duration,
                concurrency=concurrency,
                rate=rate,
                max_inflight=max_inflight,
                warmup=warmup,
                keep=keep,
                log_level=log_level,
                threads=threads,
            )
        except Exception as exc:  # keep the other configurations' figures
            out["configs"][name] = {"failed": repr(exc)[:2000]}
    return out


FILED_PG1 = (74.0, 98.0)
"""Closed-loop msg/s of one process on PostgreSQL when the throughput target was set (the
code of ``f06e7c0^``, on the machine of that day)."""
TARGET_PG2 = 300.0
"""The target then: closed-loop msg/s of two processes on PostgreSQL, on that machine."""


def baseline_ratio(result: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float] | None:
    """The target as a ratio, machine-independent: this run's PG ×2 closed-loop throughput
    over the baseline code's PG ×1 in the same run, beside the ratio the target asked for
    (300 msg/s over the 74–98 measured when it was set; ≥ 4.05 at the slow end)."""
    mine = result["configs"].get("pg2", {}).get("closed")
    theirs = baseline["configs"].get("pg1", {}).get("closed")
    if not mine or not theirs or not theirs["throughput"]:
        return None
    return {
        "pg2_msg_s": mine["throughput"],
        "baseline_pg1_msg_s": theirs["throughput"],
        "ratio": round(mine["throughput"] / theirs["throughput"], 2),
        "target_ratio": round(TARGET_PG2 / FILED_PG1[0], 2),
        "target_ratio_mid": round(TARGET_PG2 / (sum(FILED_PG1) / 2), 2),
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a table."""
    rows: list[list[object]] = []
    for name, figures in result["configs"].items():
        if "closed" not in figures:
            rows.append([name, figures.get("skipped") or figures.get("failed", "?")])
            continue
        for phase, label in (("closed", "closed"), ("open", "open")):
            f = figures[phase]
            load = f"{f['concurrency']} senders" if phase == "closed" else f"{f['rate']:g}/s"
            rows.append([
                name, label, load, f["sent"], f["throughput"], f["p50_ms"], f["p99_ms"],
                f["max_ms"], f["errors"], f["lost"], f["duplicated"], f["pushed"],
                f.get("server_cpu_ms_per_msg", ""),
            ])  # fmt: skip
    headers = [
        "config", "loop", "load", "sent", "msg/s", "p50 ms", "p99 ms", "max ms", "errors",
        "lost", "dup", "pushed", "cpu ms/msg",
    ]  # fmt: skip
    width = len(headers)
    rows = [r + [""] * (width - len(r)) for r in rows]
    notes = []
    for name, figures in result["configs"].items():
        if "token_fetches" in figures:
            notes.append(
                f"{name}: token fetches {figures['token_fetches']}, "
                f"server log errors {figures['server_errors_logged']}"
            )
    ratio = result.get("baseline_ratio")
    if ratio:
        met = "met" if ratio["ratio"] >= ratio["target_ratio"] else "NOT met"
        notes.append(
            f"pg2 closed {ratio['pg2_msg_s']} msg/s = {ratio['ratio']}× the baseline's pg1 "
            f"({ratio['baseline_pg1_msg_s']} msg/s); the 300 msg/s target asked "
            f"{ratio['target_ratio_mid']}–{ratio['target_ratio']}×: {met}"
        )
    return table(headers, rows) + "\n" + "\n".join(notes) + f"\n(duration {result['duration_s']} s)"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.load``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="%(default)s")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rate", type=float, default=150.0, help="open loop, messages/s")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="code to serve")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="copy each server's log (and SQLite file) here")
    parser.add_argument("--log-level", default="warning", help="the server's; %(default)s")
    parser.add_argument("--threads", type=int, help="the server's YXBY_THREADS (else its default)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run PG ×1 of this checkout first (the code of f06e7c0^, when the target "
        "was set) and give PG ×2 as a ratio of it",
    )
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    baseline = None
    if args.baseline:
        print(f"baseline {args.baseline}:", flush=True)
        baseline = run(
            configs=["pg1"],
            duration=args.duration,
            concurrency=args.concurrency,
            rate=args.rate,
            root=args.baseline.resolve(),
            log_level=args.log_level,
        )
        print(report(baseline))
    result = run(
        configs=chosen,
        duration=args.duration,
        concurrency=args.concurrency,
        rate=args.rate,
        root=args.root.resolve(),
        keep=args.keep.resolve() if args.keep else None,
        log_level=args.log_level,
        threads=args.threads,
    )
    if baseline is not None:
        result["baseline"] = baseline
        result["baseline_ratio"] = baseline_ratio(result, baseline)
    print(report(result))
    if args.output:
        args.output.write_text(json.dumps(result, ensure_ascii=False, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
