"""The knowledge-gap report groups unanswered questions by shared terms."""

from __future__ import annotations

from handoff.reports import gap_groups


def test_gap_groups_by_shared_terms_with_counts() -> None:
    turns = [
        ("停车位不够怎么办", ["停车位", "不够"]),
        ("停车位不够用", ["停车位", "不够"]),
        ("园区停车位收费", ["园区", "停车位", "收费"]),
        ("食堂伙食太差", ["食堂", "伙食", "差"]),
        ("停车位不够怎么办", ["停车位", "不够"]),
    ]
    groups = gap_groups(turns)
    assert groups[0].terms == ("不够", "停车位")
    assert groups[0].count == 3
    assert groups[0].questions.most_common(1)[0] == ("停车位不够怎么办", 2)
    assert sum(g.count for g in groups) == len(turns)


def test_questions_without_terms_form_their_own_group() -> None:
    groups = gap_groups([("？？", []), ("！！", [])])
    assert groups[0].terms == ("（无可检索的词）",) and groups[0].count == 2
