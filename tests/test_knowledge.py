"""The knowledge base: loading, search with explanations, and the answer/suggest/none decision."""

import datetime as dt
import logging
import textwrap
from pathlib import Path

import pytest

import knowledge
from knowledge import Action, KnowledgeBase
from yxby.errors import InputError, KnowledgeError

ENTRY = """\
- id: {id}
  title: {title}
  questions: [{q}]
  answer: {answer}
  department: 市场监管局
  source: {{document: 测试}}
  updated: 2026-01-01
{extra}"""


def write_entries(tmp_path: Path, *entries: dict[str, str]) -> Path:
    text = "".join(
        ENTRY.format(
            id=e["id"],
            title=e.get("title", e["id"]),
            q=e.get("q", "问题" + e["id"]),
            answer=e.get("answer", "答案"),
            extra=e.get("extra", ""),
        )
        for e in entries
    )
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_search_api_returns_ranked_hits_with_explanations(kb: KnowledgeBase) -> None:
    hits = kb.search("营业执照丢了怎么补办", limit=5)
    assert 1 <= len(hits) <= 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert "营业执照" in top.entry.title + top.entry.answer
    assert "营业执照" in top.matched_terms
    assert top.entry.department == "市场监管局"
    assert 0 < top.coverage <= 1


@pytest.mark.parametrize(
    ("question", "expected_department"),
    [
        ("工业企业归哪个部门管", "工信局"),
        ("金融企业的行业主管部门是谁", "财政局"),
        ("个体户找哪个部门", "市场监管局"),
    ],
)
def test_answers_name_the_responsible_department(
    kb: KnowledgeBase, question: str, expected_department: str
) -> None:
    d = kb.decide(question)
    assert d.action is Action.ANSWER, d.reason
    assert d.top is not None and expected_department in d.top.entry.answer


@pytest.mark.parametrize(
    "text", ["明天会下雨吗", "给我讲个笑话", "比特币现在多少钱", "!!!???", "😀😀😀", "asdfghjkl",
             "推荐一只明天会涨的股票", "你好"]
)  # fmt: skip
def test_chit_chat_and_gibberish_never_get_a_policy_answer(kb: KnowledgeBase, text: str) -> None:
    assert kb.decide(text).action is not Action.ANSWER


@pytest.mark.parametrize(
    "text",
    [
        "转人工",
        "人工客服",
        "我要找工作人员",
        "我想和工作人员直接沟通",
        "我要投诉",
        "ＲＥＡＬ人工服务",
    ],
)
def test_requests_for_a_person_are_handoff(kb: KnowledgeBase, text: str) -> None:
    assert kb.decide(text).action is Action.HANDOFF


def test_artificial_intelligence_is_not_a_request_for_a_person(kb: KnowledgeBase) -> None:
    assert kb.decide("人工智能企业归哪个部门管").action is not Action.HANDOFF


def test_vague_question_gets_choices(kb: KnowledgeBase) -> None:
    d = kb.decide("时限")
    assert d.action in (Action.SUGGEST, Action.ANSWER)
    if d.action is Action.SUGGEST:
        assert 2 <= len(d.suggestions) <= 3


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_input_is_rejected_in_chinese(kb: KnowledgeBase, text: str) -> None:
    with pytest.raises(InputError, match="不能为空"):
        kb.decide(text)


def test_oversized_input_is_rejected(kb: KnowledgeBase) -> None:
    with pytest.raises(InputError, match="太长"):
        kb.decide("营业执照" * 1000)


def test_decision_json_contract(kb: KnowledgeBase) -> None:
    d = kb.decide("12345热线能反映企业的问题吗").as_dict()
    assert set(d) >= {
        "action", "entry_id", "title", "answer", "department", "score", "matched_terms",
        "suggestions",
    }  # fmt: skip
    assert d["action"] == "answer"
    assert "12345" in str(d["answer"])
    assert isinstance(d["matched_terms"], list) and d["matched_terms"]


def test_expired_and_future_entries_are_not_served(tmp_path: Path) -> None:
    write_entries(
        tmp_path,
        {"id": "old", "q": "旧政策补贴怎么申请", "extra": "  expires: 2020-01-01\n"},
        {"id": "new", "q": "新政策补贴怎么申请", "extra": "  effective: 2030-01-01\n"},
        {"id": "now", "q": "现行政策补贴怎么申请"},
    )
    kb = knowledge.load(tmp_path, today=dt.date(2026, 11, 26))
    assert [e.id for e in kb.entries] == ["now"]


BROKEN = Path(__file__).parent / "data" / "kb_broken"


def test_broken_entries_are_left_out_and_recorded(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        textwrap.dedent("""\
            - id: ok-entry
              title: 标题
              questions: [营业执照怎么办理]
              answer: 答案
              department: 政务办
              source: {document: 测试}
              updated: 2026-01-01
            - id: bad-entry
              title: 标题
              questions: [问题]
              answer: 答案
              department: 政务办
              source: {document: 测试}
              updated: 2026-01-01
              colour: red
            """),
        encoding="utf-8",
    )
    kb = knowledge.load(tmp_path, today=dt.date(2026, 11, 26))
    assert [e.id for e in kb.entries] == ["ok-entry"]
    assert [str(p) for p in kb.problems] == [
        f"{tmp_path / 'bad.yaml'}:15: 错误：[bad-entry] 未知字段「colour」，允许的字段："
        "id、title、questions、answer、department、keywords、tags、source、updated、"
        "effective、expires"
    ]
    assert kb.get("ok-entry") is not None and kb.get("bad-entry") is None


def test_a_duplicate_id_keeps_the_first_and_records_both_places(tmp_path: Path) -> None:
    write_entries(tmp_path, {"id": "same", "q": "甲"}, {"id": "same", "q": "乙"})
    kb = knowledge.load(tmp_path, today=dt.date(2026, 11, 26))
    assert [e.questions for e in kb.entries] == [("甲",)]
    (problem,) = kb.problems
    assert (problem.path, problem.line) == (str(tmp_path / "a.yaml"), 8)
    assert f"条目编号「same」重复：{tmp_path / 'a.yaml'}:1 已有同一编号" in problem.message


def test_problems_are_logged_once_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="knowledge"):
        kb = knowledge.load(BROKEN, today=dt.date(2026, 11, 26))
    records = [r for r in caplog.records if r.name.startswith("knowledge")]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    text = records[0].getMessage()
    assert "知识库有 7 处问题" in text and "a.yaml:16" in text and "c.yaml:4" in text
    assert len(kb.problems) == 7
    # the good, the unknown-department and the expired entries; the expired one is not served
    assert {e.id for e in kb.entries} == {"broken-good", "broken-unknown-department"}


def test_no_usable_entry_is_a_chinese_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("- id: [\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="知识库没有一条可用的条目，共 1 处问题") as info:
        knowledge.load(tmp_path, today=dt.date(2026, 11, 26))
    assert "bad.yaml:2: 错误：YAML 格式错误" in str(info.value)
    assert len(info.value.problems) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KnowledgeError, match="知识库中没有任何条目"):
        knowledge.load(empty, today=dt.date(2026, 11, 26))


def test_without_a_date_no_entry_is_left_out_for_its_dates(tmp_path: Path) -> None:
    write_entries(
        tmp_path,
        {"id": "old", "q": "旧政策补贴怎么申请", "extra": "  expires: 2020-01-01\n"},
        {"id": "now", "q": "现行政策补贴怎么申请"},
    )
    assert [e.id for e in knowledge.load(tmp_path).entries] == ["old", "now"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="不存在"):
        knowledge.load(tmp_path / "nowhere")


def test_shipped_knowledge_base_has_no_problems(kb: KnowledgeBase) -> None:
    assert kb.problems == ()


def test_dev_eval_passes(kb: KnowledgeBase) -> None:
    from knowledge.evaluate import evaluate_file

    dev = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev.yaml"
    if not dev.exists():
        pytest.skip(f"evaluation file not found at {dev}")
    report = evaluate_file(kb, dev)
    # the thresholds are tuned on held-out questions, not on this file (see
    # config/knowledge.yaml); it must still pass almost entirely
    assert report.rate >= 0.9, report.failures
