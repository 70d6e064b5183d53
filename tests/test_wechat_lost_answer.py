"""An acknowledged answer is pushed even when its dialogue run starts late.

Under overload (the load harness's open loop on SQLite) the worker thread that runs a
message's dialogue can be busy for the whole reply budget: the message is then stored as
owed and answered ``success`` before its run has even started. That run used to look for
an owed row, find the one its own process had just written, take it for somebody else's
and give up — the answer waited for the next recovery pass (30 s) and a shutdown in
between left it unpushed. Here the run is held (deterministically, not by load) until the
row is stored, and the recovery pass never comes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.app import App
from bot.channels.wechat import WeChatAdapter
from bot.server import ServerOptions, create_asgi
from tests.conftest import MovableClock
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import LiveServer, eventually
from tests.test_wechat import (
    APPID,
    HOTLINE_QUESTION,
    OPENID,
    SECRET,
    TOKEN,
    WeChatSide,
    make_config,
    message_xml,
)


@pytest.fixture
def fake_api() -> Iterator[FakeWeChatApi]:
    with FakeWeChatApi(appid=APPID, secret=SECRET) as api:
        yield api


def test_a_run_that_starts_after_its_message_was_stored_still_pushes_the_answer(
    app: App, clock: MovableClock, fake_api: FakeWeChatApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = threading.Event()
    defer, answered_later = app.inbox.defer, app.inbox.answered_later

    def defer_then_tell(*args: Any, **kwargs: Any) -> None:
        defer(*args, **kwargs)
        stored.set()

    def after_the_store(*args: Any, **kwargs: Any) -> bool:
        # the run's worker thread was busy until the message had been stored as owed
        assert stored.wait(timeout=10), "the message was never stored"
        return answered_later(*args, **kwargs)

    monkeypatch.setattr(app.inbox, "defer", defer_then_tell)
    monkeypatch.setattr(app.inbox, "answered_later", after_the_store)

    adapter = WeChatAdapter(app, make_config(fake_api, reply_budget=0.2), recover_every=3600)
    options = ServerOptions(run_tick=False, worker_interval=0.05)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LiveServer(create_asgi(app, [adapter], options)))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
        wechat = WeChatSide(http, TOKEN, clock)
        xml = message_xml("text", created=wechat.now(), msg_id=4242, Content=HOTLINE_QUESTION)
        assert wechat.send(xml) is None  # "success": stored as owed, answer to follow

        sent = fake_api.wait_for_sent(1, timeout=10)  # no recovery pass runs in this test
        assert sent[0]["touser"] == OPENID and "12345" in sent[0]["text"]["content"]
        eventually(lambda: app.inbox.owed("wechat") == 0)

        assert wechat.send(xml) is None  # WeChat's late retry: no second answer
        assert len(fake_api.sent) == 1
