"""``/metrics``: Prometheus text with requests and latency per channel, dialogue outcomes,
the outbox, SLA clocks and the knowledge base — read back with prometheus-client's parser.

The server runs with the WeChat adapter against the fake WeChat API; a second test runs the
real ``yxby serve --workers 2`` and checks that the counts of both processes are summed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App
from bot.channels.wechat import WeChatAdapter
from bot.server import ServerOptions, create_asgi
from handoff.outbox import enqueue
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer
from tests.test_wechat import APPID, SECRET, WeChatSide, make_config
from tests.test_workers import Served, post_text, serve_env
from tests.test_workers import pg_url as pg_url  # the fixture


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


def test_metrics_count_requests_outcomes_outbox_clocks_and_knowledge(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi, make_ticket: object
) -> None:
    adapter = WeChatAdapter(app, make_config(fake_api))
    options = ServerOptions(run_tick=False, run_worker=False)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LiveServer(create_asgi(app, [adapter], options)))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
        wechat = WeChatSide(http, make_config(fake_api).token, clock)
        before = samples(http.get("/metrics").text)

        assert "12345" in (wechat.text("企业可以打什么热线反映问题") or "")
        wechat.text("你好")
        assert http.post("/wechat", params={"signature": "x"}).status_code == 403
        # an outbox message waiting for an hour, one failed
        with app.db.begin() as s:
            enqueue(s, "wechat", "oSomeone", "test", {"text": "a"}, "m1",
                    now=clock() - timedelta(hours=1))  # fmt: skip
        # a ticket whose 签收 clock is past due
        make_ticket()  # type: ignore[operator]
        clock.advance(days=10)

        response = http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        after = samples(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("yxby_http_requests_total", channel="wechat", status="200") == 2
    assert grew("yxby_http_requests_total", channel="wechat", status="403") == 1
    assert grew("yxby_http_request_seconds_count", channel="wechat") == 3
    assert grew("yxby_http_requests_total", channel="metrics", status="200") == 1
    assert grew("yxby_dialogue_turns_total", outcome="suggested") == 1
    assert grew("yxby_dialogue_turns_total", outcome="smalltalk") == 1
    assert value(after, "yxby_outbox_messages", status="pending") >= 1
    assert value(after, "yxby_outbox_messages", status="failed") == 0
    oldest = value(after, "yxby_outbox_oldest_pending_seconds")
    assert 10 * 86400 <= oldest <= 10 * 86400 + 3600 + 60
    assert value(after, "yxby_sla_clocks_due") >= 1
    assert value(after, "yxby_sla_clocks_breached") == 0
    assert value(after, "yxby_knowledge_entries") == len(app.kb) > 0
    assert value(after, "yxby_knowledge_loaded") == 1
    if app.live_kb is not None:  # a reloading knowledge base reports how the last reload went
        assert value(after, "yxby_knowledge_reload_ok") == 1
        assert value(after, "yxby_knowledge_loaded_timestamp_seconds") > 0
    assert value(after, "yxby_metrics_database_ok") == 1


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from bot.logs import configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json")
        logging.getLogger("yxby.test").info("工单 %s 已受理", "GT-1")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("yxby.test").exception("失败")
    finally:
        root.handlers, root.level = saved[0], saved[1]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines[0]["message"] == "工单 GT-1 已受理" and lines[0]["level"] == "info"
    assert lines[0]["logger"] == "yxby.test" and isinstance(lines[0]["pid"], int)
    assert "ValueError: boom" in lines[1]["exc"]


def test_metrics_of_two_workers_are_summed(tmp_path: Path, pg_url: str) -> None:
    url = pg_url
    api = FakeWeChatApi(appid="wx0123456789abcdef", secret="yxby-test-secret").start()
    try:
        served = Served(serve_env(url, tmp_path, api), tmp_path / "serve.log", "--workers", "2")
        try:
            served.wait_ready(pids=2)
            for i in range(12):
                post_text(served.url, f"oMetricsUser{i:04d}xxxxxxxxxxxx", "你好", 900 + i)
            found = samples(httpx.get(served.url + "/metrics", timeout=10).text)
        finally:
            served.stop()
    finally:
        api.stop()
    assert value(found, "yxby_http_requests_total", channel="wechat", status="200") == 12
    assert value(found, "yxby_dialogue_turns_total", outcome="smalltalk") == 12
    assert value(found, "yxby_http_requests_total", channel="healthz", status="200") >= 2
