"""No secret and no personal data reaches the logs, at any level — debug included.

Unit checks of :mod:`yxby.redact`, then the real ``yxby serve --log-level debug`` in a
subprocess with WeChat and Telegram configured (fake APIs on 127.0.0.1): a question carrying
a phone number, an access-token fetch and a customer-service push, Telegram's start-up calls —
and the whole log is searched for every secret and identity involved.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.db import open_database
from handoff.outbox import enqueue
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatApi
from tests.servers import eventually
from tests.test_serve_startup import free_port
from yxby.redact import RedactingFilter, redact, secrets_from_env, tag

YXBY = str(Path(sys.executable).with_name("yxby"))
APPID = "wx0123456789abcdef"
APP_SECRET = "yxby-test-app-secret-value"
WECHAT_TOKEN = "yxby-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oYxbyRedactUser0000000000001"
PHONE = "13912345678"
CHAT = 7001
ID_CARD = "110101199003071234"


# ------------------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("GET /cgi-bin/token?grant_type=client_credential&appid=wx1&secret=S3cr3tValue",
         "S3cr3tValue", "grant_type=client_credential"),
        ("POST /cgi-bin/message/custom/send?access_token=ACCESS-77 HTTP/1.1",
         "ACCESS-77", "/cgi-bin/message/custom/send"),
        ('{"access_token": "ACCESS-88", "expires_in": 7200}', "ACCESS-88", "expires_in"),
        ("{'access_token': 'ACCESS-99'}", "ACCESS-99", "access_token"),
        ("https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
         "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "/getMe"),
        ('"POST /wechat?signature=abc&timestamp=1&nonce=n&openid=oAbc HTTP/1.1" 200',
         "oAbc", "timestamp=1"),
        (f"dialogue failed for wechat:{OPENID}", OPENID, "dialogue failed for wechat:user#"),
        (f"联系电话{PHONE}，请回电", "12345678", "139****5678"),
        ("+86 13912345678", "912345678", "****5678"),
        ("座机 021-62345678", "62345678", "021-****5678"),
        (f"身份证{ID_CARD}", "0101199003", "110***********1234"),
        ("Authorization: Bearer abc.def", "abc.def", "Authorization"),
    ],
)  # fmt: skip
def test_rules_mask_what_must_not_be_logged(text: str, hidden: str, kept: str) -> None:
    masked = redact(text)
    assert hidden not in masked
    assert kept in masked


def test_ordinary_figures_survive() -> None:
    text = "工单 YX20261201-0001 于 2026-12-01 10:00:00 受理，信用代码 91310115MA1H7GXX3B，7200 秒"
    assert redact(text) == text


def test_configured_secret_values_are_masked_wherever_they_appear() -> None:
    env = {
        "YXBY_WECHAT_SECRET": "plain-words-secret",
        "YXBY_WECHAT_APPID": "wx-not-secret",
        "YXBY_TELEGRAM_TOKEN": "42:short",
        "HOME": "/root",
        "YXBY_DB_PASSWORD": "abc",
    }
    assert sorted(secrets_from_env(env)) == ["42:short", "plain-words-secret"]
    assert redact("x plain-words-secret y", secrets_from_env(env)) == "x *** y"


def test_a_tag_is_stable_and_hides_the_key() -> None:
    assert tag(OPENID) == tag(OPENID) != tag(OPENID + "x")
    assert OPENID not in tag(OPENID)


def test_the_filter_masks_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("yxby.x", logging.DEBUG, __file__, 1, "send to %s: %s", None, None)
    record.args = (OPENID, f"电话 {PHONE}")
    try:
        raise RuntimeError(f"GET /cgi-bin/token?secret={APP_SECRET}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    found = RedactingFilter(secrets=[APP_SECRET])
    assert found.filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert OPENID not in line and PHONE not in line and APP_SECRET not in line
    assert "RuntimeError" in line and "139****5678" in line


def test_the_access_log_keeps_its_argument_shape() -> None:
    args = ("127.0.0.1:5000", "POST", f"/wechat?openid={OPENID}&nonce=1", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', args, None)  # fmt: skip
    RedactingFilter(secrets=[]).filter(record)
    assert isinstance(record.args, tuple) and record.args[4] == 200
    assert OPENID not in record.getMessage() and "nonce=1" in record.getMessage()


# ------------------------------------------------------------------- yxby serve, debug


def _wechat_text(http: httpx.Client, content: str, msg_id: int) -> str:
    timestamp, nonce = str(int(time.time())), f"n{msg_id}"
    signature = hashlib.sha1("".join(sorted((WECHAT_TOKEN, timestamp, nonce))).encode())
    params = {"signature": signature.hexdigest(), "timestamp": timestamp, "nonce": nonce,
              "openid": OPENID}  # fmt: skip
    body = (
        f"<xml><ToUserName><![CDATA[gh_yxby00000001]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    response = http.post("/wechat", params=params, content=body.encode())
    assert response.status_code == 200, response.text
    return response.text


def test_yxby_serve_at_debug_level_logs_no_secret_and_no_personal_data(
    db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with FakeWeChatApi(appid=APPID, secret=APP_SECRET) as wechat, FakeTelegramAPI() as telegram:
        env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
        env |= {
            "YXBY_DATABASE_URL": db_url,
            "YXBY_DATA_DIR": str(tmp_path / "data"),
            "YXBY_TELEGRAM_TOKEN": TOKEN,
            "YXBY_TELEGRAM_API_BASE": telegram.base_url,
            "YXBY_TELEGRAM_MODE": "polling",
            "YXBY_WECHAT_TOKEN": WECHAT_TOKEN,
            "YXBY_WECHAT_APPID": APPID,
            "YXBY_WECHAT_SECRET": APP_SECRET,
            "YXBY_WECHAT_API_BASE": wechat.base_url,
        }
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [YXBY, "serve", "--port", str(port), "--log-level", "debug"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

                def up() -> bool:
                    assert process.poll() is None, log.read_text("utf-8")
                    try:
                        return http.get("/healthz").status_code == 200
                    except httpx.TransportError:
                        return False

                eventually(up, timeout=60)
                _wechat_text(http, f"我的电话是{PHONE}，身份证{ID_CARD}，怎么办营业执照", 1)
                database = open_database(db_url)
                try:
                    with database.begin() as session:
                        push = {"text": f"专员将致电 {PHONE}"}
                        enqueue(session, "wechat", OPENID, "test", push, "redact-1",
                                now=datetime.now(UTC))  # fmt: skip
                finally:
                    database.dispose()
                eventually(lambda: len(wechat.sent) == 1, timeout=20)
                eventually(lambda: bool(telegram.calls("getUpdates")), timeout=20)
                question = f"手机{PHONE}，公司要办理发票怎么办"
                telegram.push_update(telegram.user_message(CHAT, question))
                eventually(lambda: bool(telegram.texts(CHAT)), timeout=20)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    text = log.read_text("utf-8")
    assert " DEBUG " in text, "expected debug lines"
    assert "/wechat" in text  # the access log is there, only masked
    for secret in (APP_SECRET, TOKEN, TOKEN.partition(":")[2], "TOKEN-1", WECHAT_TOKEN,
                   OPENID, PHONE, ID_CARD):  # fmt: skip
        assert secret not in text, f"{secret!r} appears in the log:\n{text[-3000:]}"
