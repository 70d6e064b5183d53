"""Checks of the free-trade-zone entries (knowledge/entries/ftz-*.yaml) and of the whole
knowledge base's size: at least 250 entries, each with at least four distinct wordings.

The ftz entries give the general procedure and the responsible department and point to the
official channel; they must not invent amounts, percentages or phone numbers, and anything a
deployment must localise carries the ``review`` tag (:data:`knowledge.schema.REVIEW_TAG`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import knowledge
from knowledge.base import KnowledgeBase
from knowledge.lint import lint
from knowledge.schema import REVIEW_TAG, Entry
from routing import load_departments
from yxby.paths import PROJECT_ROOT

ENTRIES_DIR = PROJECT_ROOT / "knowledge" / "entries"
DEPARTMENTS_FILE = PROJECT_ROOT / "config" / "departments.yaml"
HELD_OUT = PROJECT_ROOT / "tests" / "data" / "decision_tuning_ftz.yaml"
MIN_ENTRIES = 250
MIN_QUESTIONS = 4

# the topics the content must cover, and how many entries each needs at least
TOPICS = {
    "税务": 10,
    "海关": 10,
    "保税": 10,
    "外籍人员": 8,
    "安全生产": 6,
    "消防": 3,
    "生态环境": 8,
    "节能": 2,
    "金融": 10,
    "劳动关系": 10,
    "渠道": 8,
    "自贸": 4,
}

# An amount of money or a percentage: the answers must not invent figures.
FIGURE = re.compile(r"\d+(\.\d+)?\s*(元|万元|亿元|%|％)|百分之")

# The only numbers an answer may carry: national service hotlines and emergency numbers,
# the programme's own time limits (seed: 7 and 2 working days) and the assistant's own
# examples (an 18-digit USCC, the ticket number format YX-20261126-0001).
ALLOWED_NUMBERS = {
    *("12345", "12366", "12360", "12333", "12367", "12350", "12369", "12315"),
    *("110", "119", "120"),
    *("7", "2", "18", "20261126", "0001"),
}

# Official sites a source link may point to.
OFFICIAL_HOSTS = re.compile(r"(^|\.)(gov\.cn|singlewindow\.cn)$")

CHANNELS = ("为准", "12345", "12366", "12360", "12333", "12367", "110", "网站", "咨询")
_CJK = r"[\u4e00-\u9fff]"


def _ftz_files() -> list[Path]:
    return sorted(ENTRIES_DIR.glob("ftz-*.yaml"))


@pytest.fixture(scope="module")
def shipped() -> KnowledgeBase:
    return knowledge.load()


@pytest.fixture(scope="module")
def entries(shipped: KnowledgeBase) -> list[Entry]:
    return [e for e in shipped.entries if e.id.startswith("ftz-")]


def test_the_knowledge_base_has_at_least_250_entries_and_lints_clean(
    shipped: KnowledgeBase,
) -> None:
    assert not shipped.problems
    assert len(shipped) >= MIN_ENTRIES
    departments = load_departments(DEPARTMENTS_FILE).alias_map()
    issues = lint(ENTRIES_DIR, departments=departments, today=dt.date(2026, 12, 1))
    assert [str(i) for i in issues] == []


def test_every_entry_has_at_least_four_distinct_wordings(shipped: KnowledgeBase) -> None:
    def key(q: str) -> str:
        return re.sub(r"[\s\W_]+", "", q).casefold()

    short = [e.id for e in shipped.entries if len({key(q) for q in e.questions}) < MIN_QUESTIONS]
    assert short == []


def test_ftz_files_hold_the_ftz_entries(entries: list[Entry]) -> None:
    assert len(_ftz_files()) >= 8
    for path in _ftz_files():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, list) and data, path.name
        assert all(item["id"].startswith("ftz-") for item in data), path.name
    assert len(entries) >= 100


def test_every_topic_is_covered(entries: list[Entry]) -> None:
    per_topic = Counter(tag for e in entries for tag in e.tags if tag in TOPICS)
    thin = {t: per_topic[t] for t, need in TOPICS.items() if per_topic[t] < need}
    assert thin == {}
    assert [e.id for e in entries if "ftz" not in e.tags or not set(TOPICS) & set(e.tags)] == []


def test_departments_are_canonical(entries: list[Entry]) -> None:
    names = load_departments(DEPARTMENTS_FILE).names
    assert {e.id: e.department for e in entries if e.department not in names} == {}


def test_no_invented_figures_or_numbers(entries: list[Entry]) -> None:
    assert {e.id: m.group(0) for e in entries if (m := FIGURE.search(e.answer))} == {}
    stray = {
        e.id: sorted(set(re.findall(r"\d+", e.answer)) - ALLOWED_NUMBERS)
        for e in entries
        if set(re.findall(r"\d+", e.answer)) - ALLOWED_NUMBERS
    }
    assert stray == {}


def test_answers_defer_to_the_authority_or_a_channel(entries: list[Entry]) -> None:
    # the assistant's own entries describe the assistant: nothing to defer to
    general = [e for e in entries if e.needs_review]
    assert [e.id for e in general if not any(c in e.answer for c in CHANNELS)] == []


def test_answers_are_plain_and_fit_a_wechat_reply(entries: list[Entry]) -> None:
    for e in entries:
        assert len(e.answer.encode("utf-8")) <= 2048, e.id
        assert "http" not in e.answer and "www." not in e.answer, e.id  # links go in source.url
        unquoted = re.sub(r"“[^”]*”", "", e.answer)  # a command to type may hold a space
        assert not re.search(rf"{_CJK}\s+{_CJK}", unquoted), e.id  # a folded line break


def test_what_a_deployment_must_check_is_tagged_for_review(entries: list[Entry]) -> None:
    pending = [e for e in entries if "待部署方审核" in e.source.document]
    assert len(pending) >= 100
    assert [e.id for e in pending if REVIEW_TAG not in e.tags] == []
    assert [e.id for e in entries if e.needs_review != (REVIEW_TAG in e.tags)] == []


def test_source_links_point_to_official_sites(entries: list[Entry]) -> None:
    linked = [e for e in entries if e.source.url]
    assert len(linked) >= 60
    off = {e.id: e.source.url for e in linked if not OFFICIAL_HOSTS.search(_host(e.source.url))}
    assert off == {}


def _host(url: str | None) -> str:
    return urlparse(url or "").hostname or ""


def test_held_out_cases_name_real_entries_and_are_not_copies(shipped: KnowledgeBase) -> None:
    cases = yaml.safe_load(HELD_OUT.read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 50
    answers = [c for c in cases if c["expect"] == "answer"]
    assert [c["entry"] for c in answers if shipped.get(c["entry"]) is None] == []
    asked = [set(shipped.tokenizer.analyze(q).words) for e in shipped.entries for q in e.questions]
    copied = []
    for case in cases:
        if case["expect"] == "suggest":  # a vague topic: two words, shared by design
            continue
        words = set(shipped.tokenizer.analyze(case["text"]).words)
        if any(len(words & q) > len(words) / 2 for q in asked):
            copied.append(case["text"])
    assert copied == []
