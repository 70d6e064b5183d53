"""Checks of the general enterprise-service sample entries (knowledge/entries/sample-*.yaml)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from knowledge.schema import Entry
from routing import load_departments
from yxby.paths import PROJECT_ROOT
from yxby.yamlconf import load_documents, validation_issues

ENTRIES_DIR = PROJECT_ROOT / "knowledge" / "entries"
DEPARTMENTS_FILE = PROJECT_ROOT / "config" / "departments.yaml"
MIN_ENTRIES = 85
MIN_QUESTIONS = 3
MIN_PER_TOPIC = 3
MAX_ANSWER_BYTES = 2048

# One of these topic tags goes with the ``sample`` tag on every entry.
TOPICS = frozenset(
    {
        "企业开办",
        "变更注销",
        "税务",
        "社保",
        "公积金",
        "进出口",
        "人才",
        "资质许可",
        "知识产权",
        "个体工商户",
        "年报信用",
        "政策融资",
        "建设环境",
        "用工",
    }
)

# A currency amount or a percentage: the answers must not invent figures.
FIGURE = re.compile(r"\d+(\.\d+)?\s*(元|万元|亿元|%|％)|百分之")

# Official channels an answer may point to when it does not say "以……为准".
CHANNELS = (
    "政务服务网",
    "电子税务局",
    "12366",
    "12333",
    "12360",
    "12345",
    "12315",
    "国家企业信用信息公示系统",
    "单一窗口",
    "国家知识产权局",
)

# Programme topics belong to the seed-*.yaml entries, not to the samples.
PROGRAMME_TERMS = ("联席会议", "有需必应", "企业服务专员", "工单")

_PUNCT = re.compile(r"[\s\W_]+")


@dataclass(frozen=True)
class Loaded:
    """One validated entry and the file it came from."""

    path: Path
    entry: Entry


def _sample_files() -> list[Path]:
    return sorted(ENTRIES_DIR.glob("sample-*.yaml"))


def _load(paths: list[Path]) -> tuple[list[Loaded], list[str]]:
    loaded: list[Loaded] = []
    problems: list[str] = []
    for path in paths:
        for doc in load_documents(path):
            many = isinstance(doc.data, list)
            items = doc.data if many else [doc.data]
            for i, item in enumerate(items):
                prefix: tuple[int, ...] = (i,) if many else ()
                try:
                    loaded.append(Loaded(path, Entry.model_validate(item)))
                except ValidationError as exc:
                    issues = validation_issues(exc, str(path), doc.lines, prefix)
                    problems.extend(str(issue) for issue in issues)
    return loaded, problems


@pytest.fixture(scope="module")
def loaded() -> list[Loaded]:
    entries, problems = _load(_sample_files())
    assert not problems, "invalid sample entries:\n" + "\n".join(problems)
    return entries


@pytest.fixture(scope="module")
def entries(loaded: list[Loaded]) -> list[Entry]:
    return [item.entry for item in loaded]


def _key(question: str) -> str:
    return _PUNCT.sub("", question).casefold()


def test_sample_files_exist() -> None:
    files = _sample_files()
    assert len(files) >= 10, [f.name for f in files]


def test_every_file_is_a_list_of_entries() -> None:
    for path in _sample_files():
        docs = load_documents(path)
        assert len(docs) == 1, f"{path.name}: expected one YAML document"
        assert isinstance(docs[0].data, list) and docs[0].data, f"{path.name}: expected a list"


def test_at_least_85_entries(entries: list[Entry]) -> None:
    assert len(entries) >= MIN_ENTRIES


def test_ids_unique_and_prefixed(entries: list[Entry]) -> None:
    counts = Counter(e.id for e in entries)
    assert [i for i, n in counts.items() if n > 1] == []
    assert [e.id for e in entries if not e.id.startswith("sample-")] == []


def test_questions_unique_across_files(loaded: list[Loaded]) -> None:
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for item in loaded:
        for question in item.entry.questions:
            key = _key(question)
            if key in seen:
                duplicates.append(f"{question!r} in {item.entry.id} and {seen[key]}")
            seen[key] = item.entry.id
    assert duplicates == []


def test_each_entry_has_enough_distinct_questions(entries: list[Entry]) -> None:
    short = [e.id for e in entries if len({_key(q) for q in e.questions}) < MIN_QUESTIONS]
    assert short == []


def test_sample_and_topic_tags(entries: list[Entry]) -> None:
    untagged = [e.id for e in entries if "sample" not in e.tags]
    no_topic = [e.id for e in entries if not TOPICS.intersection(e.tags)]
    assert untagged == []
    assert no_topic == []


def test_every_topic_is_covered(entries: list[Entry]) -> None:
    per_topic = Counter(tag for e in entries for tag in e.tags if tag in TOPICS)
    thin = {topic: per_topic[topic] for topic in TOPICS if per_topic[topic] < MIN_PER_TOPIC}
    assert thin == {}


def test_departments_are_canonical(entries: list[Entry]) -> None:
    names = load_departments(DEPARTMENTS_FILE).names
    wrong = {e.id: e.department for e in entries if e.department not in names}
    assert wrong == {}


def test_answers_fit(entries: list[Entry]) -> None:
    too_long = {e.id: n for e in entries if (n := len(e.answer.encode("utf-8"))) > MAX_ANSWER_BYTES}
    assert too_long == {}


def test_figure_guard_catches_amounts_and_percentages() -> None:
    for text in ("收费200元", "注册资本3 万元", "比例为12%", "降低0.5％", "上浮百分之十"):
        assert FIGURE.search(text), text
    for text in ("拨打12345", "每年1月1日至6月30日", "三十日内", "9610模式"):
        assert not FIGURE.search(text), text


def test_no_invented_figures(entries: list[Entry]) -> None:
    found = {e.id: m.group(0) for e in entries if (m := FIGURE.search(e.answer))}
    assert found == {}


def test_answers_defer_to_the_authority_or_a_channel(entries: list[Entry]) -> None:
    bare = [
        e.id for e in entries if "为准" not in e.answer and not any(c in e.answer for c in CHANNELS)
    ]
    assert bare == []


def test_tax_answers_name_the_tax_authority(entries: list[Entry]) -> None:
    tax = [e for e in entries if "税务" in e.tags]
    assert tax
    assert [e.id for e in tax if "税务部门" not in e.answer] == []
    assert {e.department for e in tax} == {"财政局"}


def test_customs_answers_name_customs(entries: list[Entry]) -> None:
    customs = [e for e in entries if "进出口" in e.tags and e.department == "商务局"]
    assert customs
    assert [e.id for e in customs if not re.search("海关|商务部门", e.answer)] == []


def test_no_programme_topics_or_urls(entries: list[Entry]) -> None:
    for e in entries:
        text = " ".join((e.title, e.answer, *e.questions))
        assert not [t for t in PROGRAMME_TERMS if t in text], e.id
        assert "http" not in e.answer, e.id
        assert e.source.url is None, e.id


def test_sources_mark_sample_content(entries: list[Entry]) -> None:
    unmarked = [e.id for e in entries if "示例" not in e.source.document or not e.source.section]
    assert unmarked == []


def test_loader_reports_bad_entry_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "sample-bad.yaml"
    bad.write_text(
        "- id: sample-bad\n"
        "  title: 坏条目\n"
        "  questions: [一个问题]\n"
        "  answer: 回答\n"
        "  department: 政务办\n"
        "  source: {document: 示例}\n"
        "  updated: 2026-11-26\n"
        "  colour: red\n",
        encoding="utf-8",
    )
    entries, problems = _load([bad])
    assert entries == []
    assert len(problems) == 1 and ":8:" in problems[0] and "colour" in problems[0]
