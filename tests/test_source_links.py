"""An entry's ``source.url`` reaches every channel as a link.

The schema accepts only http(s) addresses and ``yxby kb lint`` reports a bad one with its
line; the answer puts the address on a line of its own, so the terminal shows it plain,
WeChat (which links addresses in text messages) gets it in the passive reply, Telegram gets
an ``<a href>`` in HTML mode, and the console's knowledge page links the source document.
The tests run on a two-entry knowledge base of their own, so the shipped content can change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

import knowledge
from bot.app import App
from bot.channels.telegram.rendering import to_html
from knowledge.base import KnowledgeBase
from knowledge.lint import lint
from knowledge.schema import Entry
from tests.chatting import Chat
from tests.servers import LiveServer
from tests.test_console_intake import console, http_for, live, person
from tests.test_telegram import Bot, api, running
from tests.test_wechat import Harness, fake_api, serve

__all__ = ["api", "console", "fake_api", "live", "running", "serve"]  # fixtures used here

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

URL = "https://www.chinatax.gov.cn/n810341/index.html?a=1&b=2"
LINKED = "增值税期末留抵税额怎么申请退还"
UNLINKED = "纳税信用等级怎么查询结果"

OTHERS = (
    "营业执照补办",
    "商标注册",
    "海关报关",
    "工伤认定",
    "公积金提取",
    "排污许可",
    "施工许可",
    "专利申请",
)

ENTRIES = f"""\
- id: test-linked
  title: 留抵退税
  questions:
    - {LINKED}
    - 留抵税额退税条件
  answer: 符合条件的纳税人可以向主管税务部门申请退还期末留抵税额，以税务部门的最新规定为准。
  department: 财政局
  keywords: [留抵退税]
  source:
    document: 测试文档
    section: 留抵退税
    url: {URL}
  updated: 2026-12-01

- id: test-unlinked
  title: 纳税信用
  questions:
    - {UNLINKED}
    - 纳税信用评价结果在哪看
  answer: 纳税信用评价结果可以在电子税务局查询，以税务部门的最新规定为准。
  department: 财政局
  source:
    document: 测试文档
  updated: 2026-12-01
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    """Overrides the shipped knowledge base for this module's ``app``."""
    directory = tmp_path_factory.mktemp("links")
    (directory / "links.yaml").write_text(ENTRIES, encoding="utf-8")
    # a few unrelated entries, so that BM25 has document frequencies to work with
    (directory / "others.yaml").write_text(
        "".join(
            f"- {{id: other-{i}, title: {t}, questions: [{t}怎么办理],"
            f" answer: {t}的办理以主管部门为准。, department: 政务办,"
            f" source: {{document: 测试文档}}, updated: 2026-12-01}}\n"
            for i, t in enumerate(OTHERS)
        ),
        encoding="utf-8",
    )
    base = knowledge.load(directory)
    assert not base.problems
    return base


# ----------------------------------------------------------------------------- schema, lint


def _entry(url: str) -> dict[str, object]:
    return {
        "id": "x-entry",
        "title": "标题",
        "questions": ["问题"],
        "answer": "回答",
        "department": "财政局",
        "source": {"document": "文档", "url": url},
        "updated": "2026-12-01",
    }


@pytest.mark.parametrize("url", ["https://www.customs.gov.cn", "http://a.cn/p?q=1&r=2"])
def test_the_schema_takes_http_and_https_addresses(url: str) -> None:
    assert Entry.model_validate(_entry(url)).source.url == url


@pytest.mark.parametrize(
    "url",
    ["www.customs.gov.cn", "ftp://a.cn/x", "https://", "https://a.cn/有 空格", "javascript:x"],
)
def test_the_schema_refuses_anything_else(url: str) -> None:
    with pytest.raises(ValidationError, match="应为 http\\(s\\) 网址"):
        Entry.model_validate(_entry(url))


def test_lint_reports_a_bad_address_with_its_file_and_line(tmp_path: Path) -> None:
    text = ENTRIES.replace(f"url: {URL}", "url: www.chinatax.gov.cn")
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    line = 1 + text.splitlines().index("    url: www.chinatax.gov.cn")
    issues = lint(tmp_path, today=dt.date(2026, 12, 1))
    errors = [i for i in issues if i.severity.value == "error"]
    assert len(errors) == 1
    assert errors[0].path.endswith("bad.yaml") and errors[0].line == line
    assert "网址" in errors[0].message


# ----------------------------------------------------------------------------- channels


def test_the_terminal_shows_the_address_on_its_own_line(chat: Chat) -> None:
    lines = chat.send(LINKED).splitlines()
    assert URL in lines
    assert lines.index(URL) == 2  # after the answer and its (依据……) line
    assert "http" not in chat.send(UNLINKED)


def test_telegram_sends_the_address_as_a_link(
    app: App, api: object, running: Callable[[str], Bot]
) -> None:
    bot = running("webhook")
    firm = bot.person(5101)
    visible = firm.say(LINKED)
    assert URL in visible.splitlines()
    sent = [r.params for r in api.calls("sendMessage")]  # type: ignore[attr-defined]
    answer = next(p for p in sent if "留抵税额" in str(p.get("text")))
    assert answer["parse_mode"] == "HTML"
    href = URL.replace("&", "&amp;")
    assert f'<a href="{href}">{href}</a>' in answer["text"]


def test_to_html_links_addresses_and_escapes_everything_else() -> None:
    assert to_html("见 https://a.cn/x?y=1&z=2。") == (
        '见 <a href="https://a.cn/x?y=1&amp;z=2">https://a.cn/x?y=1&amp;z=2</a>。'
    )
    assert (
        to_html("（https://a.cn/p），下一句")
        == '（<a href="https://a.cn/p">https://a.cn/p</a>），下一句'
    )
    assert to_html("结尾 http://a.cn.") == '结尾 <a href="http://a.cn">http://a.cn</a>.'
    assert (
        to_html('【标题】<b>"x"</b> https://') == '<b>【标题】</b>&lt;b&gt;"x"&lt;/b&gt; https://'
    )
    assert to_html("没有网址") == "没有网址"


def test_wechat_passive_reply_carries_the_address(serve: Callable[..., Harness]) -> None:
    h = serve()
    reply = h.wechat.text(LINKED)
    assert reply is not None and URL in reply.splitlines()
    assert "http" not in (h.wechat.text(UNLINKED) or "")


@pytest.fixture
def client(live: LiveServer, console: App) -> Iterator[httpx.Client]:
    with http_for(live, person(console, "李华", "财政局")) as http:
        yield http


def test_the_console_knowledge_page_links_the_source(client: httpx.Client) -> None:
    linked = client.get("/console/kb", params={"q": LINKED})
    assert linked.status_code == 200
    href = URL.replace("&", "&amp;")
    assert f'<a href="{href}" rel="noreferrer noopener" target="_blank">测试文档</a>' in linked.text
    unlinked = client.get("/console/kb", params={"q": UNLINKED}).text
    assert "测试文档" in unlinked
