"""联席会议纪要: the Word document opened back with python-docx and read as a person would."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date

import pytest
from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt

from handoff.minutes import chinese_date, chinese_number
from handoff.supervision import Supervision, load_supervision_settings
from handoff.tickets import TicketService, TicketState, TicketView
from yxby.errors import TicketError


def east_asian(paragraph: object) -> set[str]:
    runs = paragraph.runs  # type: ignore[attr-defined]
    return {r._element.rPr.find(qn("w:rFonts")).get(qn("w:eastAsia")) for r in runs}


def sizes(paragraph: object) -> set[float]:
    return {r.font.size.pt for r in paragraph.runs}  # type: ignore[attr-defined]


def test_numbers_and_dates_in_chinese() -> None:
    assert [chinese_number(n) for n in (1, 9, 10, 11, 20, 23)] == [
        "一", "九", "十", "十一", "二十", "二十三",
    ]  # fmt: skip
    assert chinese_date(date(2026, 12, 3)) == "2026年12月3日"
    with pytest.raises(ValueError):
        chinese_number(0)


def test_minutes_in_the_official_layout(
    make_ticket: Callable[..., TicketView], service: TicketService
) -> None:
    sup = Supervision(service, load_supervision_settings())
    with pytest.raises(TicketError, match="还没有召开"):
        sup.minutes()
    first = make_ticket("保税仓库扩建用地审批", state=TicketState.IN_PROGRESS)
    service.add_helpers(first.number, departments=["规建局"], actor="张敏")
    service.escalate(first.number, actor="张敏", reason="用地指标需多部门协调")
    second = make_ticket("跨境电商退税", state=TicketState.IN_PROGRESS, department="商务局")
    service.escalate(second.number, actor="赵六", reason="政策口径不一")
    meeting = sup.schedule(
        date(2026, 11, 27),
        title="2026年第3次优化营商环境工作联席会议",
        doc_number="〔2026〕3号",
        attendance=["政务办 李华", "发改局 钱七", "市场监管局 张敏"],
    )
    service.record_opinion(first.number, department="市场监管局", opinion="建议发改局牵头",
                           actor="张敏")  # fmt: skip
    service.record_opinion(first.number, department="规建局", opinion="可调整用地指标",
                           actor="孙八")  # fmt: skip
    service.decide(first.number, lead_department="发改局", helpers=["规建局", "市场监管局"],
                   deadline=date(2026, 12, 20), decision="发改局牵头，一个月内完成审批",
                   actor="政务办李华")  # fmt: skip

    doc = Document(io.BytesIO(sup.minutes(meeting.id)))
    section = doc.sections[0]
    assert (round(section.top_margin.mm), round(section.left_margin.mm)) == (37, 28)
    paras = [p for p in doc.paragraphs]
    texts = [p.text for p in paras]
    title = paras[0]
    assert title.text == "保税区优化营商环境工作联席会议纪要"
    assert title.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert east_asian(title) == {"方正小标宋简体"} and sizes(title) == {22.0}
    assert paras[1].text == "〔2026〕3号" and paras[1].alignment == WD_ALIGN_PARAGRAPH.CENTER
    opening = next(p for p in paras if p.text.startswith("2026年11月27日"))
    assert "2026年第3次优化营商环境工作联席会议" in opening.text and "议定 1 件" in opening.text
    assert east_asian(opening) == {"仿宋_GB2312"} and sizes(opening) == {16.0}
    assert opening.paragraph_format.first_line_indent == Pt(32)
    assert opening.paragraph_format.line_spacing == Pt(28)
    heading = texts.index(f"一、关于保税仓库扩建用地审批（工单 {first.number}）")
    assert east_asian(paras[heading]) == {"黑体"}
    block = texts[heading : heading + 8]
    assert "承办单位市场监管局提请：用地指标需多部门协调" in block
    assert "市场监管局意见：建议发改局牵头" in block and "规建局意见：可调整用地指标" in block
    assert "会议决定：发改局牵头，一个月内完成审批" in block
    assert "牵头部门：发改局" in block
    assert "协办部门：规建局、市场监管局" in block
    assert "完成时限：2026年12月20日前" in block
    later = texts.index(f"二、关于跨境电商退税（工单 {second.number}）")
    assert texts[later + 2] == "会议决定：本次会议未作决定，下次会议继续研究。"
    assert "出席：政务办 李华、发改局 钱七、市场监管局 张敏" in texts
    assert texts[-1] == "2026年11月27日" and paras[-1].alignment == WD_ALIGN_PARAGRAPH.RIGHT
