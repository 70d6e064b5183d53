"""The knowledge base follows its files while serving: reload, swap, broken edits, dates.

Unit tests drive :class:`knowledge.live.LiveKnowledge` on a temporary directory with an
injected clock; the last tests run a real server (uvicorn in a thread, then the real
``yxby serve`` in a subprocess) and edit the files under it. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import App, AppSettings, build_app
from bot.server import ServerOptions, create_asgi
from handoff.calendar import SHANGHAI
from knowledge.live import LiveKnowledge
from tests.conftest import MovableClock
from tests.servers import LiveServer, eventually
from yxby.errors import KnowledgeError
from yxby.paths import PROJECT_ROOT

ENTRIES = PROJECT_ROOT / "knowledge" / "entries"
QUIET = ServerOptions(run_worker=False, run_tick=False, watch_knowledge=False)

SUBMERSIBLE = """\
- id: live-submersible-entry
  title: 深海潜水器临时进境备案
  questions:
    - 深海潜水器临时进境怎么备案
    - 潜水器进境需要什么材料
  answer: 深海潜水器临时进境，请向潜水器备案窗口提交进境备案材料。
  department: 海关
  source:
    document: 测试条目
  updated: 2026-11-20
"""

BEEKEEPING = """\
- id: live-beekeeping-entry
  title: 蜂箱养殖场地登记
  questions:
    - 蜂箱养殖场地怎么登记
    - 养蜂场地登记去哪里办
  answer: 蜂箱养殖场地登记，请到养蜂登记窗口办理。
  department: 市场监管局
  source:
    document: 测试条目
  updated: 2026-11-20
"""


def dated(expires: str | None = None, effective: str | None = None) -> str:
    """The beekeeping entry with dates."""
    lines = [f"  expires: {expires}"] if expires else []
    lines += [f"  effective: {effective}"] if effective else []
    return BEEKEEPING + "".join(line + "\n" for line in lines)


def today_of(clock: MovableClock) -> date:
    return clock().astimezone(SHANGHAI).date()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token cache for the module: the shipped entries are tokenized once."""
    return tmp_path_factory.mktemp("kb-cache")


@pytest.fixture
def entries(tmp_path: Path) -> Path:
    """The shipped entries plus the submersible one, in a directory the test may edit."""
    directory = tmp_path / "entries"
    shutil.copytree(ENTRIES, directory)
    (directory / "submersible.yaml").write_text(SUBMERSIBLE, "utf-8")
    return directory


@pytest.fixture
def live(cache: Path) -> Any:
    def make(directory: Path, clock: MovableClock) -> LiveKnowledge:
        return LiveKnowledge(directory, today=lambda: today_of(clock), clock=clock, cache_dir=cache)

    return make


def answered(kb: LiveKnowledge, text: str) -> str | None:
    d = kb.decide(text)
    return d.top.entry.id if d.action == "answer" and d.top else None


def test_an_added_entry_is_served_after_reload(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    assert answered(kb, "蜂箱养殖场地怎么登记") is None
    before = kb.status
    (entries / "bees.yaml").write_text(BEEKEEPING, "utf-8")
    status = kb.reload()
    assert answered(kb, "蜂箱养殖场地怎么登记") == "live-beekeeping-entry"
    assert answered(kb, "深海潜水器临时进境怎么备案") == "live-submersible-entry"
    assert status.ok and status.entries == len(kb) == before.entries + 1
    assert status.fingerprint != before.fingerprint


def test_reload_without_a_change_keeps_the_same_index(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    served = kb.current
    assert kb.reload().ok
    assert kb.current is served


def test_a_broken_edit_keeps_the_old_answers_and_the_error_clears_when_fixed(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    (entries / "bees.yaml").write_text(BEEKEEPING, "utf-8")
    kb.reload()
    good = kb.status
    # an unterminated quote on line 4, and the other file edited in the same save
    (entries / "bees.yaml").write_text(
        BEEKEEPING.replace("- 蜂箱养殖场地怎么登记", '- "蜂箱'), "utf-8"
    )
    status = kb.reload()
    assert not status.ok
    assert status.error_file == str(entries / "bees.yaml") and status.error_line
    assert f"bees.yaml:{status.error_line}" in status.error
    assert "仍在使用" in status.error
    assert status.fingerprint == good.fingerprint and status.loaded_at == good.loaded_at
    assert answered(kb, "蜂箱养殖场地怎么登记") == "live-beekeeping-entry"  # still served
    assert kb.reload().error == status.error  # the same broken files: the error stands

    (entries / "bees.yaml").write_text(
        BEEKEEPING.replace("到养蜂登记窗口", "到新的养蜂窗口"), "utf-8"
    )
    fixed = kb.reload()
    assert fixed.ok and not fixed.error and not fixed.problems
    top = kb.decide("蜂箱养殖场地怎么登记").top
    assert top is not None and "新的养蜂窗口" in top.entry.answer


def test_a_schema_mistake_names_the_line_and_undoing_it_clears(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    original = (entries / "submersible.yaml").read_text("utf-8")
    (entries / "submersible.yaml").write_text(
        original.replace("updated: 2026-11-20", "updated: 昨天")
    )
    status = kb.reload()
    assert not status.ok and status.error_line == 10 and "updated" in status.error
    assert answered(kb, "深海潜水器临时进境怎么备案") == "live-submersible-entry"
    (entries / "submersible.yaml").write_text(original, "utf-8")  # the edit undone
    assert kb.reload().ok


def test_a_duplicate_id_in_a_new_file_is_refused(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    (entries / "zz-copy.yaml").write_text(SUBMERSIBLE.replace("请向潜水器", "请向别的"), "utf-8")
    status = kb.reload()
    assert not status.ok and "重复" in status.error
    assert status.error_file == str(entries / "zz-copy.yaml") and status.error_line == 1
    top = kb.decide("深海潜水器临时进境怎么备案").top
    assert top is not None and "潜水器备案窗口" in top.entry.answer


def test_a_broken_lexicon_setting_keeps_serving(
    live: Any, entries: Path, clock: MovableClock, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    kb = LiveKnowledge(entries, today=lambda: today_of(clock), clock=clock, config_dir=config)
    (config / "knowledge.yaml").write_text("bm25:\n  k1: -1\n", "utf-8")
    status = kb.reload()
    assert not status.ok and status.error_file == str(config / "knowledge.yaml")
    assert status.error_line == 2
    assert answered(kb, "深海潜水器临时进境怎么备案") == "live-submersible-entry"
    (config / "knowledge.yaml").write_text("bm25:\n  k1: 1.2\n", "utf-8")
    assert kb.reload().ok and kb.settings.bm25.k1 == 1.2


def test_first_load_with_nothing_usable_raises(
    live: Any, tmp_path: Path, clock: MovableClock
) -> None:
    (tmp_path / "bad.yaml").write_text("- id: x\n", "utf-8")
    with pytest.raises(KnowledgeError):
        live(tmp_path, clock)


def test_an_expiring_entry_disappears_at_midnight_shanghai(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    clock.set(datetime(2026, 11, 23, 23, 59, 59, tzinfo=SHANGHAI))
    (entries / "bees.yaml").write_text(dated(expires="2026-11-23"), "utf-8")
    kb = live(entries, clock)
    served = len(kb)
    assert answered(kb, "蜂箱养殖场地怎么登记") == "live-beekeeping-entry"  # its last day
    clock.set(datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI))
    assert answered(kb, "蜂箱养殖场地怎么登记") is None
    assert kb.get("live-beekeeping-entry") is None and len(kb) == served - 1
    assert kb.status.entries == served - 1 and kb.status.day == date(2026, 11, 24)


def test_an_entry_comes_into_force_on_its_day(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    clock.set(datetime(2026, 11, 30, 23, 0, tzinfo=SHANGHAI))
    (entries / "bees.yaml").write_text(dated(effective="2026-12-01"), "utf-8")
    kb = live(entries, clock)
    assert kb.get("live-beekeeping-entry") is None
    clock.set(datetime(2026, 12, 1, 0, 0, 1, tzinfo=SHANGHAI))
    assert answered(kb, "蜂箱养殖场地怎么登记") == "live-beekeeping-entry"


def test_a_new_day_without_date_changes_keeps_the_index(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    served = kb.current
    clock.set(clock() + timedelta(days=1))
    assert kb.current is served


def test_requests_during_a_reload_see_one_index_or_the_other(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    stop = threading.Event()
    seen: list[str | None] = []
    failures: list[BaseException] = []

    def ask() -> None:
        while not stop.is_set():
            try:
                seen.append(answered(kb, "深海潜水器临时进境怎么备案"))
            except BaseException as exc:  # reported below
                failures.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for i in range(5):
            (entries / "bees.yaml").write_text(BEEKEEPING.replace("窗口", f"窗口{i}"), "utf-8")
            assert kb.reload().ok
    finally:
        stop.set()
        asker.join(10)
    assert not failures and seen and set(seen) == {"live-submersible-entry"}


def test_the_watcher_reloads_on_a_file_change(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    kb.start(watch=True, debounce_ms=100)
    try:
        eventually(lambda: kb.status.watching, timeout=10)  # the watch is set up
        (entries / "bees.yaml").write_text(BEEKEEPING, "utf-8")
        eventually(lambda: answered(kb, "蜂箱养殖场地怎么登记"), timeout=10)
    finally:
        kb.stop()
    assert not kb.status.watching


def test_request_reload_without_threads_reloads_in_the_background(
    live: Any, entries: Path, clock: MovableClock
) -> None:
    kb = live(entries, clock)
    (entries / "bees.yaml").write_text(BEEKEEPING, "utf-8")
    kb.request_reload()
    eventually(lambda: answered(kb, "蜂箱养殖场地怎么登记"), timeout=10)


# ----------------------------------------------------------------------------- the app


@pytest.fixture
def live_app(db_url: str, clock: MovableClock, entries: Path) -> Iterator[App]:
    settings = AppSettings.from_env(database_url=db_url, knowledge_dir=entries)
    application = build_app(settings, clock)
    yield application
    application.close()


def test_the_app_and_its_dialogue_share_the_live_base(live_app: App, entries: Path) -> None:
    live_kb = live_app.live_kb
    assert live_kb is not None and live_app.dialogue.svc.kb is live_kb
    (entries / "bees.yaml").write_text(BEEKEEPING, "utf-8")
    live_kb.reload()
    assert live_app.dialogue.svc.kb.get("live-beekeeping-entry") is not None


def test_healthz_shows_a_broken_edit_then_clears(live_app: App, entries: Path) -> None:
    live_kb = live_app.live_kb
    assert live_kb is not None
    with LiveServer(create_asgi(live_app, [], QUIET)) as server, httpx.Client() as http:
        body = http.get(server.url + "/healthz").json()
        served = len(live_kb)
        assert body["knowledge"]["status"] == "ok" and body["knowledge"]["entries"] == served
        (entries / "bad.yaml").write_text("- id: broken-entry\n  title: [\n", "utf-8")
        live_kb.reload()
        response = http.get(server.url + "/healthz")
        assert response.status_code == 200  # the last good version still answers
        knowledge = response.json()["knowledge"]
        assert knowledge["status"] == "error" and knowledge["entries"] == served
        assert knowledge["error_file"] == str(entries / "bad.yaml") and knowledge["error_line"]
        assert "bad.yaml:" in knowledge["error"]
        (entries / "bad.yaml").unlink()
        live_kb.reload()
        knowledge = http.get(server.url + "/healthz").json()["knowledge"]
        assert knowledge["status"] == "ok" and "error" not in knowledge


# ----------------------------------------------------------------------------- yxby serve

YXBY = str(Path(sys.executable).with_name("yxby"))


def test_an_entry_added_while_yxby_serve_runs_answers_within_ten_seconds(
    db_url: str, tmp_path: Path
) -> None:
    from tests.fakes.wechat_api import FakeWeChatApi
    from tests.test_serve_startup import APP_SECRET, APPID, WECHAT_TOKEN, free_port, wechat_text

    knowledge = tmp_path / "entries"
    shutil.copytree(ENTRIES, knowledge)
    port = free_port()
    with FakeWeChatApi(appid=APPID, secret=APP_SECRET) as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
        env |= {
            "YXBY_DATABASE_URL": db_url,
            "YXBY_DATA_DIR": str(tmp_path / "data"),
            "YXBY_KNOWLEDGE_DIR": str(knowledge),
            "YXBY_WECHAT_TOKEN": WECHAT_TOKEN,
            "YXBY_WECHAT_APPID": APPID,
            "YXBY_WECHAT_SECRET": APP_SECRET,
            "YXBY_WECHAT_API_BASE": api.base_url,
        }
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [YXBY, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

                def knowledge_health() -> dict[str, Any] | None:
                    assert process.poll() is None, log.read_text("utf-8")
                    try:
                        found: dict[str, Any] = http.get("/healthz").json()["knowledge"]
                    except httpx.TransportError:
                        return None  # not listening yet
                    return found

                eventually(lambda: (knowledge_health() or {}).get("watching"), timeout=60)
                first = knowledge_health()
                assert first is not None and first["status"] == "ok"
                question = "深海潜水器临时进境怎么备案"
                assert "潜水器备案窗口" not in wechat_text(http, time.time(), question, msg_id=1)

                (knowledge / "zz-live-submersible.yaml").write_text(SUBMERSIBLE, "utf-8")
                added = time.monotonic()
                replies: list[str] = []

                def answers() -> bool:
                    reply = wechat_text(http, time.time(), question, msg_id=10 + len(replies))
                    replies.append(reply)
                    return "潜水器备案窗口" in reply

                eventually(answers, timeout=10)
                assert time.monotonic() - added < 10
                after = knowledge_health()
                assert after is not None and after["entries"] == first["entries"] + 1, (
                    first,
                    after,
                )

                # a broken edit: the old answers stay and /healthz names the file and line
                (knowledge / "zz-live-submersible.yaml").write_text(
                    SUBMERSIBLE.replace("title: 深海潜水器临时进境备案", "title: [深海"), "utf-8"
                )
                eventually(lambda: (knowledge_health() or {})["status"] == "error", timeout=10)
                broken = knowledge_health()
                assert broken is not None and "zz-live-submersible.yaml:" in broken["error"]
                reply = wechat_text(http, time.time(), question, msg_id=100)
                assert "潜水器备案窗口" in reply

                # SIGHUP reloads too (the watcher would as well; the fix is seen either way)
                (knowledge / "zz-live-submersible.yaml").write_text(SUBMERSIBLE, "utf-8")
                process.send_signal(signal.SIGHUP)
                eventually(lambda: (knowledge_health() or {})["status"] == "ok", timeout=10)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    text = log.read_text("utf-8")
    assert "知识库更新未生效" in text and "知识库已加载" in text
