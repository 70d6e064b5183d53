"""Checks of the knowledge entries drawn from the programme text (knowledge/entries/seed-*.yaml)."""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
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
DOCUMENT = "天津港保税区“政企同行·有需必应”工作实施方案"
UPDATED = dt.date(2025, 10, 16)

# Every figure the seed gives an enterprise: 12345 热线, 2 and 7 工作日, the dates and
# document numbers of the programme. An answer with any other number invented it.
SEED_NUMBERS = {"12345", "2", "7", "2025", "10", "16", "2024", "2026"}

# 附件3 行业主管部门明细表: row -> (industries named in the row, responsible department).
ANNEX3 = {
    1: (("服务业",), "发改局"),
    2: (("建筑业", "运输业", "房地产业"), "规建局"),
    3: (("工业", "电力", "采矿业"), "工信局"),
    4: (("卫生和社会工作",), "社发局"),
    5: (("贸易业", "住宿餐饮业"), "商务局"),
    6: (("金融业",), "财政局"),
    7: (("科技创新业",), "科技局"),
    8: (("文化", "教育", "体育", "娱乐业"), "文教局"),
    9: (("水利、环境和公共设施管理业",), "城环局"),
}

# Evaluation questions of the brief and a string the answer found must contain (any of).
EVAL = [
    ("诉求一般几个工作日能办结", ("7个工作日",)),
    ("需要多个部门协同办理的诉求，承办单位多久和企业对接", ("2个工作日",)),
    ("办完事以后几天内反馈结果", ("2个工作日",)),
    ("办结以后几天内反馈结果", ("2个工作日",)),
    ("企业可以打什么热线反映问题", ("12345",)),
    ("个体工商户的服务由哪个部门负责", ("市场监管局", "市场局")),
    ("产业园区里的企业谁来服务", ("科技局", "天保控股", "临港控股")),
    ("银行保险这类金融企业由哪个局主管", ("财政局",)),
    ("疑难复杂问题怎么处理", ("联席会议",)),
    ("政企同行有需必应工作由哪个部门牵头", ("政务办",)),
    ("办完事以后会对企业满意度进行回访吗", ("满意度", "回访")),
    ("建筑业和房地产业的主管部门", ("规建局",)),
    ("工业企业归哪个部门管", ("工信局",)),
    ("住宿餐饮业由哪个部门负责", ("商务局",)),
    ("企业服务专员是做什么的", ("专员",)),
    ("你们能简单的问题当场解决吗", ("即时解决", "知识库")),
]

_CJK = r"[\u3400-\u9fff]"
_PUNCT = re.compile(r"[\s\W_]+")


@dataclass(frozen=True)
class Loaded:
    """One validated entry and the file it came from."""

    path: Path
    entry: Entry


def _seed_files() -> list[Path]:
    return sorted(ENTRIES_DIR.glob("seed-*.yaml"))


def _load(paths: list[Path]) -> tuple[list[Loaded], list[str]]:
    loaded: list[Loaded] = []
    problems: list[str] = []
    for path in paths:
        for doc in load_documents(path):
            items = doc.data if isinstance(doc.data, list) else [doc.data]
            for i, item in enumerate(items):
                prefix: tuple[str | int, ...] = (i,) if isinstance(doc.data, list) else ()
                try:
                    loaded.append(Loaded(path, Entry.model_validate(item)))
                except ValidationError as exc:
                    problems.extend(
                        str(issue) for issue in validation_issues(exc, str(path), doc.lines, prefix)
                    )
    return loaded, problems


@pytest.fixture(scope="module")
def seed() -> list[Loaded]:
    loaded, problems = _load(_seed_files())
    assert not problems, "\n".join(problems)
    return loaded


@pytest.fixture(scope="module")
def entries(seed: list[Loaded]) -> list[Entry]:
    return [item.entry for item in seed]


def _norm(text: str) -> str:
    """Compare questions as ``yxby kb lint`` does: NFKC, no punctuation, lower case."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text)).lower()


def _bigrams(text: str) -> set[str]:
    text = _norm(text)
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _rank(query: str, entries: list[Entry]) -> list[tuple[float, Entry]]:
    """A deliberately crude stand-in for the search engine: IDF-weighted bigram overlap.

    Its point is to catch evaluation questions whose wording no entry covers (the answer
    must be among the top two), not to predict the real engine's (jieba + BM25) ranking.
    """
    docs = [[_bigrams(f) for f in (e.title, *e.questions)] for e in entries]
    df = Counter(b for fields in docs for b in set().union(*fields))
    idf = {b: math.log((1 + len(entries)) / (1 + n)) + 1 for b, n in df.items()}
    unseen = max(idf.values())
    q = _bigrams(query)

    def weight(grams: set[str]) -> float:
        return sum(idf.get(b, unseen) for b in grams)

    scored = []
    for entry, fields in zip(entries, docs, strict=True):
        best = max(weight(q & f) / weight(q | f) for f in fields)
        kw = sum(1 for k in entry.keywords if _norm(k) and _norm(k) in _norm(query))
        scored.append((best + 0.1 * kw, entry))
    return sorted(scored, key=lambda pair: pair[0], reverse=True)


def test_seed_files_exist_and_hold_35_to_45_entries(seed: list[Loaded]) -> None:
    assert len(_seed_files()) >= 6
    assert 35 <= len(seed) <= 45
    assert {item.path for item in seed} == set(_seed_files())


def test_loader_reports_bad_items_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "seed-bad.yaml"
    bad.write_text(
        "- id: seed-x\n  title: t\n  questions: [a]\n  answer: b\n  department: 政务办\n"
        "  source: {document: d}\n  updated: 2025-10-16\n  colour: red\n",
        encoding="utf-8",
    )
    loaded, problems = _load([bad])
    assert loaded == []
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}:8: ") and "未知字段「colour」" in problems[0]


def test_ids_unique(entries: list[Entry]) -> None:
    dupes = [i for i, n in Counter(e.id for e in entries).items() if n > 1]
    assert dupes == []
    assert all(e.id.startswith("seed-") for e in entries)


def test_questions_unique_across_seed_files_and_at_least_three(entries: list[Entry]) -> None:
    assert [e.id for e in entries if len(e.questions) < 3] == []
    counts = Counter(_norm(q) for e in entries for q in e.questions)
    assert [q for q, n in counts.items() if n > 1] == []


def test_eval_questions_are_not_copied_verbatim(entries: list[Entry]) -> None:
    asked = {_norm(q) for e in entries for q in e.questions}
    assert [q for q, _ in EVAL if _norm(q) in asked] == []


def test_tags_seed_and_exactly_one_of_programme_or_routing(entries: list[Entry]) -> None:
    assert [e.id for e in entries if "seed" not in e.tags] == []
    assert [e.id for e in entries if ("programme" in e.tags) == ("routing" in e.tags)] == []


def test_departments_are_canonical(entries: list[Entry]) -> None:
    names = load_departments(DEPARTMENTS_FILE).names
    assert [(e.id, e.department) for e in entries if e.department not in names] == []


def test_source_and_updated(entries: list[Entry]) -> None:
    assert [e.id for e in entries if e.source.document != DOCUMENT] == []
    assert [e.id for e in entries if not e.source.section] == []
    assert [e.id for e in entries if e.updated != UPDATED] == []


def test_answers_short_plain_and_without_invented_figures(entries: list[Entry]) -> None:
    for e in entries:
        assert len(e.answer.encode("utf-8")) <= 2048, e.id
        sentences = [s for s in re.split(r"[。！？]", e.answer) if s.strip()]
        assert 1 <= len(sentences) <= 4, e.id
        # a folded YAML line break would leave a space between Chinese characters
        assert not re.search(rf"{_CJK}\s+{_CJK}", e.answer), e.id
        assert "http" not in e.answer and "www" not in e.answer, e.id
        assert set(re.findall(r"\d+", e.answer)) <= SEED_NUMBERS, e.id


@pytest.mark.parametrize("row", sorted(ANNEX3))
def test_each_annex3_row_has_a_routing_entry(entries: list[Entry], row: int) -> None:
    industries, department = ANNEX3[row]
    matches = [e for e in entries if (e.source.section or "").endswith(f"附件3第{row}项")]
    assert len(matches) == 1
    entry = matches[0]
    assert "routing" in entry.tags
    assert entry.department == department
    assert department in entry.answer
    assert all(industry in entry.answer for industry in industries)


@pytest.mark.parametrize(
    ("entry_id", "department", "named"),
    [
        ("seed-means-individual-business", "市场监管局", ("市场监管局", "市场局")),
        ("seed-means-buildings-parks", "科技局", ("科技局", "天保控股", "临港控股", "城更集团")),
        ("seed-means-fallback", "政务办", ("社发局", "政务办", "网格化管理")),
    ],
)
def test_service_means_routing_entries(
    entries: list[Entry], entry_id: str, department: str, named: tuple[str, ...]
) -> None:
    entry = next(e for e in entries if e.id == entry_id)
    assert "routing" in entry.tags
    assert entry.department == department
    assert all(name in entry.answer for name in named)


def test_investment_entry_lists_every_investment_department(entries: list[Entry]) -> None:
    entry = next(e for e in entries if e.id == "seed-means-investment")
    investment = [d.name for d in load_departments(DEPARTMENTS_FILE).with_role("招商部门")]
    assert len(investment) == 14
    assert [name for name in investment if name not in entry.answer] == []


@pytest.mark.parametrize(("question", "expected"), EVAL, ids=[q for q, _ in EVAL])
def test_eval_question_finds_an_answering_entry(
    entries: list[Entry], question: str, expected: tuple[str, ...]
) -> None:
    ranked = _rank(question, entries)
    assert ranked[0][0] > 0.1, (question, ranked[0][1].id)
    top2 = [entry for _, entry in ranked[:2]]
    assert any(s in e.answer for e in top2 for s in expected), (question, [e.id for e in top2])
