"""The topic-word rule: no confident answer when the best entry lacks the query's topic.

A question that shares its verbs with an entry (丢了怎么补办) but names something else
(驾照, 户口本) must not get that entry as a confident answer; questions written here, not
taken from the tuning files.
"""

import re
from pathlib import Path

import pytest

import knowledge
from knowledge import Action, KnowledgeBase
from knowledge.base import Hit, choose
from knowledge.settings import DecisionSettings
from knowledge.tokenizer import Tokenizer

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _hit(kb: KnowledgeBase, i: int, score: float, *, missing: str = "", share: float = 0.0) -> Hit:
    return Hit(kb.entries[i], score, ("词",), 0.9, 0.9, missing, share)


def test_a_confident_hit_lacking_a_heavy_word_is_offered_not_answered(kb: KnowledgeBase) -> None:
    d = DecisionSettings()
    hits = [_hit(kb, 0, 10.0, missing="年检", share=0.5), _hit(kb, 1, 2.0)]
    action, choices, reason = choose(hits, d)
    assert action is Action.SUGGEST
    assert [h.entry.id for h in choices] == [kb.entries[0].id, kb.entries[1].id]
    assert "年检" in reason and CHINESE.search(reason)


def test_below_the_share_the_hit_is_answered(kb: KnowledgeBase) -> None:
    d = DecisionSettings(missing_word_share=0.35)
    hits = [_hit(kb, 0, 10.0, missing="之前", share=0.2), _hit(kb, 1, 2.0)]
    assert choose(hits, d)[0] is Action.ANSWER


def test_without_choices_the_rule_gives_nothing(kb: KnowledgeBase) -> None:
    # confident only as a "sure" match (confidence 0.25), and below the choices' threshold
    d = DecisionSettings(
        answer_confidence=0.3, suggest_confidence=0.3, sure_confidence=0.2, sure_margin=1.0
    )
    top = Hit(kb.entries[0], 10.0, ("词",), 0.4, 0.1, "好吃", 0.6)
    action, choices, reason = choose([top], d)
    assert action is Action.NONE and choices == ()
    assert "好吃" in reason and CHINESE.search(reason)
    assert choose([top], d.model_copy(update={"missing_word_share": 1.01}))[0] is Action.ANSWER


def test_the_rule_can_be_turned_off(kb: KnowledgeBase) -> None:
    hits = [_hit(kb, 0, 10.0, missing="年检", share=1.0), _hit(kb, 1, 2.0)]
    assert choose(hits, DecisionSettings(missing_word_share=1.01))[0] is Action.ANSWER


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("驾照丢了怎么补办", "驾照"),
        ("户口本丢了怎么补办", "户口本"),
        ("结婚证丢了怎么补办", "结婚证"),
        ("宠物狗生病了怎么办", "宠物狗"),
    ],
)
def test_shipped_kb_does_not_answer_another_topic(kb: KnowledgeBase, text: str, word: str) -> None:
    d = kb.decide(text)
    assert d.action is not Action.ANSWER, d.reason
    assert word in d.reason and CHINESE.search(d.reason)
    assert d.top is not None and d.top.missing_term == word


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("营业执照丢了怎么补办", "sample-license-replacement"),
        ("公司想更名要多久", "sample-change-registration"),
        ("想把注册资本调低", "sample-capital-reduction"),
        ("酒店开业前消防检查", "ftz-fire-opening-inspection"),
        ("高企怎么弄", "sample-high-tech-enterprise"),
    ],
)
def test_shipped_kb_still_answers_its_own_topics(kb: KnowledgeBase, text: str, entry: str) -> None:
    d = kb.decide(text)
    assert d.action is Action.ANSWER, d.reason
    assert d.top is not None and d.top.entry.id == entry


ENTRIES = """\
- id: loan
  title: 小微企业贷款
  questions: [小微企业资金困难怎么贷款]
  answer: 可以向合作银行申请信用贷款。
  department: 市场监管局
  source: {document: 测试}
  updated: 2026-01-01
- id: seal
  title: 企业刻章
  questions: [公章去哪里刻]
  answer: 到公安备案的刻章企业刻制。
  department: 市场监管局
  source: {document: 测试}
  updated: 2026-01-01
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    base: Path = tmp_path_factory.mktemp("topic")
    # more entries about other things, so that BM25's idf of a one-entry word is positive
    others = "".join(
        f"- id: other-{i}\n  title: {t}\n  questions: [{t}怎么办理]\n  answer: 请咨询窗口。\n"
        "  department: 市场监管局\n  source: {document: 测试}\n  updated: 2026-01-01\n"
        for i, t in enumerate(["年度报告", "社保登记", "发票领用", "商标注册", "出口退税"])
    )
    (base / "a.yaml").write_text(ENTRIES + others, encoding="utf-8")
    return knowledge.load(base)


def test_an_entry_with_a_sub_word_has_the_word(small: KnowledgeBase) -> None:
    # 资金周转 is one word; the loan entry has its sub-word 资金, so it is not missing
    top = small.search("资金周转不开想贷款")[0]
    assert top.entry.id == "loan"
    assert top.missing_term != "资金周转"


def test_the_missing_word_is_the_heaviest_absent_one(small: KnowledgeBase) -> None:
    top = small.search("护照去哪里刻")[0]
    assert top.entry.id == "seal"
    assert top.missing_term == "护照"
    assert 0 < top.missing_share < 1


def test_an_entry_with_every_word_misses_nothing(small: KnowledgeBase) -> None:
    top = small.search("公章去哪里刻")[0]
    assert (top.missing_term, top.missing_share) == ("", 0.0)


def test_analysis_records_sub_words_and_guessed_words(tokenizer: Tokenizer) -> None:
    a = tokenizer.analyze("资金周转困难")
    assert len(a.parts) == len(a.words)
    assert "资金" in a.parts[a.words.index("资金周转")]
    assert tokenizer.analyze("营业执照").guessed == frozenset()
    # jieba's HMM joins 想 and 查 into a "word" no dictionary has
    assert "想查" in tokenizer.analyze("想查一下我的专员电话").guessed
