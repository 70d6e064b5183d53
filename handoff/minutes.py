"""联席会议纪要 as a Word document (python-docx), in the usual 公文 layout (GB/T 9704-2012).

* page: A4, margins 37 mm top, 35 mm bottom, 28 mm left, 26 mm right;
* title: 方正小标宋简体 二号 (22 pt), centred; the 文号 below it, 仿宋 三号, centred;
* body: 仿宋_GB2312 三号 (16 pt), fixed 28 pt line spacing, first line indented two
  characters; the numbered items (一、二、…) per ticket in 黑体, each with the reason, the
  departments' opinions, the decision, lead department, helpers and deadline;
* attendance (出席), then the date, right-aligned, at the end.

East Asian fonts are set on ``w:eastAsia`` (Word picks the Chinese face from it); the Latin
face is the same, so numbers and ticket codes match the text around them.
"""

from __future__ import annotations

import io
from datetime import date, datetime

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.shared import Mm, Pt
from docx.text.paragraph import Paragraph

from handoff.calendar import SHANGHAI
from handoff.supervision import AgendaItem, MeetingView

__all__ = [
    "BODY_FONT",
    "BODY_SIZE",
    "HEADING_FONT",
    "TITLE_FONT",
    "TITLE_SIZE",
    "chinese_date",
    "chinese_number",
    "render",
]

TITLE_FONT = "方正小标宋简体"
BODY_FONT = "仿宋_GB2312"
HEADING_FONT = "黑体"
TITLE_SIZE = Pt(22)  # 二号
BODY_SIZE = Pt(16)  # 三号
LINE = Pt(28)
ORGAN = "保税区优化营商环境工作联席会议"

_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """1 → 一, 10 → 十, 12 → 十二, 23 → 二十三 (item numbers up to 99)."""
    if not 0 < n < 100:
        raise ValueError(f"item number out of range: {n}")
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _DIGITS[tens] + "十")
    return head + (_DIGITS[ones] if ones else "")


def chinese_date(day: date) -> str:
    """``2026年12月3日`` (成文日期: Arabic numerals, no leading zeros)."""
    return f"{day.year}年{day.month}月{day.day}日"


def _deadline(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(SHANGHAI)
    if (local.hour, local.minute) == (23, 59):
        return chinese_date(local.date()) + "前"
    return f"{chinese_date(local.date())}{local:%H:%M}前"


def _font(paragraph: Paragraph, text: str, face: str, size: Pt, *, bold: bool = False) -> None:
    run = paragraph.add_run(text)
    run.font.name = face
    run.font.size = size
    run.font.bold = bold
    props = run._element.get_or_add_rPr()
    fonts = props.find(qn("w:rFonts"))
    if fonts is None:  # pragma: no cover - python-docx adds it with font.name
        fonts = props.makeelement(qn("w:rFonts"), {})
        props.append(fonts)
    fonts.set(qn("w:eastAsia"), face)


def _paragraph(
    doc: DocxDocument,
    text: str = "",
    *,
    face: str = BODY_FONT,
    size: Pt = BODY_SIZE,
    align: WD_ALIGN_PARAGRAPH | None = None,
    indent: bool = True,
    bold: bool = False,
) -> Paragraph:
    p = doc.add_paragraph()
    fmt = p.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = LINE
    fmt.space_before = Pt(0)
    fmt.space_after = Pt(0)
    if indent:
        fmt.first_line_indent = Pt(size.pt * 2)
    if align is not None:
        p.alignment = align
    if text:
        _font(p, text, face, size, bold=bold)
    return p


def _item(doc: DocxDocument, n: int, item: AgendaItem) -> None:
    _paragraph(
        doc, f"{chinese_number(n)}、关于{item.title}（工单 {item.number}）", face=HEADING_FONT
    )
    _paragraph(doc, f"承办单位{item.department}提请：{item.reason}")
    for dept in item.involved:
        said = item.opinions.get(dept)
        if said:
            _paragraph(doc, f"{dept}意见：{said.get('opinion', '')}")
    if not item.decided:
        _paragraph(doc, "会议决定：本次会议未作决定，下次会议继续研究。")
        return
    if item.decision:
        _paragraph(doc, f"会议决定：{item.decision}")
    _paragraph(doc, f"牵头部门：{item.lead_department}")
    helpers = "、".join(item.decided_helpers) or "无"
    _paragraph(doc, f"协办部门：{helpers}")
    _paragraph(doc, f"完成时限：{_deadline(item.deadline)}")


def render(meeting: MeetingView, *, organ: str = ORGAN) -> bytes:
    """The minutes of *meeting* as ``.docx`` bytes."""
    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(37), Mm(35)
    section.left_margin, section.right_margin = Mm(28), Mm(26)
    normal = doc.styles["Normal"]
    normal.font.name = BODY_FONT
    normal.font.size = BODY_SIZE
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), BODY_FONT)

    _paragraph(doc, f"{organ}纪要", face=TITLE_FONT, size=TITLE_SIZE,
               align=WD_ALIGN_PARAGRAPH.CENTER, indent=False)  # fmt: skip
    number = meeting.doc_number or f"〔{meeting.held_on.year}〕{meeting.id}号"
    _paragraph(doc, number, align=WD_ALIGN_PARAGRAPH.CENTER, indent=False)
    _paragraph(doc)
    decided = sum(1 for i in meeting.items if i.decided)
    _paragraph(
        doc,
        f"{chinese_date(meeting.held_on)}，政务办牵头召开{meeting.title}，专题研究企业诉求中"
        f"需跨部门协调解决的疑难问题 {len(meeting.items)} 件，议定 {decided} 件。"
        "现将会议议定事项纪要如下：",
    )
    for n, item in enumerate(meeting.items, start=1):
        _item(doc, n, item)
    _paragraph(doc)
    people = "、".join(meeting.attendance) or "（未登记）"
    _paragraph(doc, f"出席：{people}", indent=False)
    _paragraph(doc)
    _paragraph(doc, "政务办", align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
    _paragraph(doc, chinese_date(meeting.held_on), align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
