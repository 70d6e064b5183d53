"""The knowledge-gap report groups unanswered questions under whole words people recognise."""

from __future__ import annotations

import re

from handoff.reports import gap_groups
from knowledge import KnowledgeBase

QUESTIONS = [
    "园区停车位不够怎么办",
    "停车位太少了怎么办",
    "员工停车位收费吗",
    "园区停车位不够怎么办",
    "食堂伙食太差怎么办",
    "食堂能不能延长营业时间",
    "个体户外出务工社保怎么办",
    "外籍员工子女上学怎么办",
    "外籍员工子女入学需要什么材料",
]


def turns(kb: KnowledgeBase, questions: list[str]) -> list[tuple[str, list[str]]]:
    """(text, tokens) as the dialogue log stores them: the decision's search tokens."""
    return [(q, list(kb.decide(q).tokens)) for q in questions]


def test_groups_are_named_by_whole_words_with_counts_and_examples(kb: KnowledgeBase) -> None:
    groups = gap_groups(turns(kb, QUESTIONS), kb=kb)
    assert groups[0].terms[0] == "停车位" and groups[0].count == 4
    assert groups[0].questions.most_common(1)[0] == ("园区停车位不够怎么办", 2)
    by_questions = {frozenset(g.questions): g for g in groups}
    foreign = by_questions[frozenset(QUESTIONS[7:9])]
    assert set(foreign.terms) == {"外籍", "子女"} and foreign.count == 2
    assert by_questions[frozenset(QUESTIONS[4:6])].terms[0] == "食堂"
    assert sum(g.count for g in groups) == len(QUESTIONS)


def test_no_group_is_named_by_a_fragment(kb: KnowledgeBase) -> None:
    logged = turns(kb, QUESTIONS)
    stored = {t for _, tokens in logged for t in tokens}
    assert {"么办", "户外"} <= stored  # the log holds sub-word fragments (char bigrams) ...
    for group in gap_groups(logged, kb=kb):
        for term in group.terms:  # ... but every name is one of jieba's whole words
            assert len(term) >= 2
            assert any(term in kb.tokenizer.analyze(q).words for q in group.questions), term
        assert not {"么办", "户外", "个外", "怎么办"} & set(group.terms)


def test_generic_words_name_no_group(kb: KnowledgeBase) -> None:
    # 企业 (公司's canonical form) is in most entries: the rarer shared word names the group
    questions = ["公司路灯坏了找谁", "公司门口路灯坏了", "公司的路灯晚上坏了怎么报修"]
    groups = gap_groups(turns(kb, questions), kb=kb)
    assert len(groups) == 1 and groups[0].count == 3
    assert groups[0].terms[0] == "路灯" and "企业" not in groups[0].terms


def test_masked_text_markers_are_no_words(kb: KnowledgeBase) -> None:
    groups = gap_groups([("〔隐去〕的停车位不够", []), ("〔隐去〕停车位收费", [])], kb=kb)
    assert groups[0].terms[0] == "停车位" and not any("隐去" in t for t in groups[0].terms)


def test_without_a_knowledge_base_the_shipped_lexicon_names_groups() -> None:
    groups = gap_groups([(q, []) for q in QUESTIONS])
    assert groups[0].terms[0] == "停车位" and groups[0].count == 4
    assert all(re.fullmatch(r"\S{2,}", t) for g in groups for t in g.terms)


def test_questions_without_words_form_their_own_group() -> None:
    groups = gap_groups([("？？", []), ("！！", [])])
    assert groups[0].terms == ("（无可检索的词）",) and groups[0].count == 2
