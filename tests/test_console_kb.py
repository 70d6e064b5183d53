"""知识库查询 in the console: the search page with matched terms marked, the JSON endpoint
other pages use, and /static/kb.js putting an entry's answer into a reply box in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from bot.app import App
from bot.console.knowledge import highlight
from bot.console.pages import Pages
from bot.server import ServerOptions, create_asgi
from handoff.accounts import SignedIn
from tests import test_console_intake as intake_tests
from tests.servers import LiveServer
from tests.test_console_intake import http_for, person

console = intake_tests.console
page = intake_tests.page
QUESTION = "营业执照经营范围变更"


@pytest.fixture
def live(console: App) -> Iterator[LiveServer]:
    """The console, plus a bare page with a reply box that loads /static/kb.js (the ticket
    page's engineer includes the script the same way), under the console's CSP."""
    asgi = create_asgi(console, [], ServerOptions(run_worker=False, run_tick=False))
    csp = Pages().render("auth_message.html", title="x", message="x", back="/").headers

    async def reply_box(_: Request) -> HTMLResponse:
        html = (
            '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<link rel="stylesheet" href="/static/yxby.css">'
            '<script src="/static/kb.js" defer></script></head><body><main>'
            '<label for="reply">回复企业</label>'
            '<textarea id="reply" data-kb-target data-kb-query="营业执照经营范围变更"></textarea>'
            "</main></body></html>"
        )
        return HTMLResponse(
            html, headers={"Content-Security-Policy": csp["content-security-policy"]}
        )

    asgi.router.routes.insert(0, Route("/console/test-reply-box", reply_box))
    with LiveServer(asgi) as server:
        yield server


@pytest.fixture
def zhang(console: App) -> SignedIn:
    return person(console, "张敏", "市场监管局")


@pytest.fixture
def client(live: LiveServer, zhang: SignedIn) -> Iterator[httpx.Client]:
    with http_for(live, zhang) as http:
        yield http


def test_highlight_marks_every_term_longest_first() -> None:
    assert highlight("营业执照变更登记与执照补办", ["执照", "营业执照"]) == [
        ("营业执照", True),
        ("变更登记与", False),
        ("执照", True),
        ("补办", False),
    ]
    assert highlight("Word 文档", ["word"]) == [("Word", True), (" 文档", False)]
    assert highlight("无命中", []) == [("无命中", False)]


def test_the_search_page_lists_hits_with_terms_marked(client: httpx.Client, console: App) -> None:
    empty = client.get("/console/kb")
    assert empty.status_code == 200 and "企业服务知识库" in empty.text
    assert "检索结果" not in empty.text
    response = client.get("/console/kb", params={"q": QUESTION})
    assert response.status_code == 200
    html = response.text
    top = console.kb.search(QUESTION)[0]
    assert top.entry.title in html.replace("<mark>", "").replace("</mark>", "")
    assert "<mark>" in html and "得分" in html and "置信度" in html
    assert f"承办部门：{top.entry.department}" in html
    assert top.entry.source.document in html
    assert "<script" not in html and "style=" not in html


def test_a_query_that_is_too_long_says_so(client: httpx.Client, console: App) -> None:
    limit = console.kb.settings.limits.max_query_chars
    response = client.get("/console/kb", params={"q": "营" * (limit + 1)})
    assert response.status_code == 200 and "问题太长" in response.text


def test_the_json_endpoint_answers_other_pages(client: httpx.Client, console: App) -> None:
    response = client.get("/console/kb/search.json", params={"q": QUESTION, "limit": "3"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["query"] == QUESTION and 1 <= len(body["hits"]) <= 3
    hit = body["hits"][0]
    entry = console.kb.get(hit["id"])
    assert entry is not None
    assert hit["answer"] == entry.answer and hit["department"] == entry.department
    assert hit["source"]["document"] == entry.source.document
    assert hit["matched_terms"] and hit["score"] > 0
    assert "".join(text for text, _ in hit["answer_marks"]) == entry.answer
    assert any(matched for _, matched in hit["answer_marks"] + hit["title_marks"])
    bad = client.get("/console/kb/search.json", params={"q": "  "})
    assert bad.status_code == 400 and bad.json()["error"] and bad.json()["hits"] == []


def test_the_knowledge_pages_need_a_session(live: LiveServer) -> None:
    with http_for(live) as anonymous:
        for path in ("/console/kb?q=社保", "/console/kb/search.json?q=社保"):
            response = anonymous.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/console/login")


def test_browser_kb_js_puts_an_answer_into_the_reply_box(
    page: Any, live: LiveServer, zhang: SignedIn, console: App
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    failed: list[str] = []
    page.on(
        "response",
        lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None,
    )
    page.context.add_cookies(
        [{"name": "yxby_console", "value": zhang.token, "url": f"{live.url}/console"}]
    )
    page.goto(f"{live.url}/console/test-reply-box")
    page.get_by_text("知识库查找答复").click()  # opens, and searches the offered query
    first = page.get_by_role("button", name="填入回复").first
    first.wait_for()
    assert page.locator(".kb-helper mark").count() > 0
    top = console.kb.search(QUESTION)[0].entry
    first.click()
    assert page.get_by_label("回复企业").input_value() == top.answer
    page.get_by_label("检索知识库").fill("   ")
    page.get_by_role("button", name="查找").click()
    assert page.get_by_role("status").text_content() == "请输入要查找的内容。"
    assert errors == [] and failed == []  # nothing refused by the CSP, no script error
