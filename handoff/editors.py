"""The editors' loop: what enterprises asked, how each entry fared, and drafts that become YAML.

Services for the 编辑 role (the console pages and ``yxby kb …`` commands are thin callers):

* :meth:`Editors.log` — the conversation log from ``dialogue_turn``: question → tokens → top
  hits (score, coverage, matched terms) → decision → outcome, filtered and paginated, with
  every enterprise identity masked by :func:`mask` (no openid, no names, phones or codes);
* :meth:`Editors.entry_figures` — per entry: shown, answered, 已解决/未解决 and the tickets
  that followed, the worst entries first;
* drafts (:class:`~handoff.models.KnowledgeDraft`): a new wording of an entry or a new entry
  from a log line or a gap group, a 服务案例 from a resolved ticket (masked); reviewed,
  linted with the rules of :mod:`knowledge.lint` and then written into the knowledge
  directory — only when ``YXBY_KNOWLEDGE_WRITABLE`` is set — or offered as a YAML patch.
  Writing appends to a file (or inserts one wording line), so untouched entries keep their
  formatting byte for byte;
* :func:`hit_test` and :func:`batch_hit_test` — a question → hits and the decision with its
  reason (what ``yxby kb test`` shows), and the same over an uploaded CSV/XLSX list.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from handoff.calendar import SHANGHAI
from handoff.conversations import DialogueTurn, TurnOutcome
from handoff.models import (
    ChannelIdentity,
    Commissioner,
    KnowledgeDraft,
    KnowledgeDraftKind,
    KnowledgeDraftStatus,
    Ticket,
    TicketState,
)
from handoff.scope import Person, can_edit_knowledge
from yxby import paths
from yxby.errors import InputError, YxbyError

if TYPE_CHECKING:
    from knowledge import Decision, KnowledgeBase
    from knowledge.lint import LintIssue

__all__ = [
    "OUTCOME_LABELS",
    "WRITABLE_ENV",
    "BatchReport",
    "BatchRow",
    "DraftError",
    "DraftPreview",
    "EditorOnly",
    "Editors",
    "EntryFigures",
    "HitTest",
    "LogFilter",
    "LogHit",
    "LogLine",
    "LogPage",
    "NotWritable",
    "ResolvedTicket",
    "batch_hit_test",
    "entry_yaml",
    "hit_test",
    "mask",
    "read_batch",
    "writable_from",
]

WRITABLE_ENV = "YXBY_KNOWLEDGE_WRITABLE"
MAX_BATCH_ROWS = 2000
PER_PAGE = 50

OUTCOME_LABELS: dict[str, str] = {
    TurnOutcome.SOLVED.value: "已解决",
    TurnOutcome.UNSOLVED.value: "未解决",
    TurnOutcome.TICKET.value: "转工单",
    TurnOutcome.NONE.value: "无答案",
    TurnOutcome.ANSWERED.value: "已答复（未反馈）",
    TurnOutcome.SUGGESTED.value: "给出选项",
    TurnOutcome.HANDOFF.value: "转人工",
}
"""The outcomes of a question turn, as the log filters and shows them."""
ACTION_LABELS = {"answer": "直接答复", "suggest": "给出选项", "none": "无答案", "handoff": "转人工"}
RESOLVED_STATES = (
    TicketState.RESOLVED,
    TicketState.FEEDBACK_SENT,
    TicketState.SURVEYED,
    TicketState.CLOSED,
)


class EditorOnly(YxbyError):
    """The person is not an editor (编辑 or 管理员)."""

    def __init__(self) -> None:
        super().__init__("只有编辑和管理员可以使用知识库编辑功能")


class DraftError(InputError):
    """A draft cannot be made, changed or written (Chinese, safe to show)."""


class NotWritable(DraftError):
    """Writing into the knowledge directory is off: download the patch instead."""

    def __init__(self) -> None:
        super().__init__(
            f"本服务器未开启知识库写入（{WRITABLE_ENV} 未设置），请下载 YAML 补丁提交到 git"
        )


def writable_from(env: Mapping[str, str]) -> bool:
    """Whether ``YXBY_KNOWLEDGE_WRITABLE`` in *env* allows writing YAML (1/true/yes/on)."""
    return env.get(WRITABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------------ masking

_LABEL_ENTERPRISE = "〔企业名称〕"
_LABEL_CODE = "〔信用代码〕"
_LABEL_ID = "〔证件号码〕"
_LABEL_PHONE = "〔电话〕"
_LABEL_NAME = "〔姓名〕"
_LABEL_MAIL = "〔邮箱〕"
_LABEL_NUMBER = "〔号码〕"

_MAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_USCC = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)0\d{2,3}[- ]?\d{7,8}(?!\d)")
_LONG_NUMBER = re.compile(r"(?<![\d\-A-Za-z])\d{7,}(?!\d)")  # not YX-20261201-0001
_COMPANY = re.compile(
    r"([^\s，。！？、；：,.!?;:“”\"'（）()的是在我们你他她请问和与给为了对向把被从〔〕]{2,30}?)"
    r"(有限责任公司|股份有限公司|有限公司|集团公司|分公司|合伙企业|事务所|工作室|商行|经营部)"
)
_GENERIC = re.compile(
    r"怎么|如何|怎样|注册|注销|设立|成立|开办|开|办|变更|一家|一个|个人|什么|哪些|想|要|新|本"
)
_SURNAME_CHARS = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关"
)
_TITLE = re.compile(
    r"(?<![\u4e00-\u9fa5])([\u4e00-\u9fa5]{1,3}?)(先生|女士|经理|总监|主任|科长|处长|局长|老师|师傅|会计)"
)
_INTRO = re.compile(
    r"(联系人|姓名|经办人|负责人|法定代表人|法人代表|法人)(\s*(?:[:：]|是|为)\s*)"
    r"([" + _SURNAME_CHARS + r"][\u4e00-\u9fa5]{1,2})"
)
_CALLED = re.compile(r"(我叫|本人叫)(\s*)([\u4e00-\u9fa5]{2,3})")
_CHINESE_NAME = re.compile(r"^[\u4e00-\u9fa5]{2,4}$")
_NAME_SURNAMES = set(_SURNAME_CHARS)
_CORE_PREFIX = re.compile(r"^(天津市|天津港保税区|天津港|天津|滨海新区|保税区|临港|空港)")
_CORE_SUFFIX = re.compile(
    r"(有限责任公司|股份有限公司|有限公司|集团公司|分公司|合伙企业|公司|集团)$"
)


@cache
def _names_tagger() -> Any:
    """A jieba part-of-speech tagger of its own (person names are tagged ``nr``)."""
    import jieba
    import jieba.posseg

    tk = jieba.Tokenizer()
    tk.tmp_dir = str(paths.usable_dir(paths.data_dir() / "jieba"))  # jieba's cache, shared
    return jieba.posseg.POSTokenizer(tk)


def _known_variants(value: str, label: str) -> Iterable[tuple[str, str]]:
    value = value.strip()
    if len(value) < 2:
        return
    yield value, label
    if label == _LABEL_ENTERPRISE:
        core = _CORE_SUFFIX.sub("", _CORE_PREFIX.sub("", value))
        if len(core) >= 2 and core != value:
            yield core, label


def mask(text: str, known: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> str:
    """*text* with the personal data of enterprises and people replaced by 〔…〕 labels.

    *known* pairs a value the database knows (an enterprise's name, its credit code, a
    contact's name or phone, a commissioner's name) with its label; they go first, longest
    first (an enterprise's name also without its place prefix and 有限公司). Then patterns:
    e-mail, ID card and 统一社会信用代码, mobile and landline numbers and any run of seven or
    more digits, names ending in 有限公司 …, people named before 先生/女士/经理 … or after
    联系人/我叫 …, and the person names jieba recognises. The one masking rule of the project:
    the conversation log, the gap groups and every draft use it.
    """
    if not text:
        return text
    pairs = list(known.items()) if isinstance(known, Mapping) else list(known)
    variants = {v: lab for value, label in pairs for v, lab in _known_variants(value, label)}
    for value in sorted(variants, key=len, reverse=True):
        text = text.replace(value, variants[value])
    text = _MAIL.sub(_LABEL_MAIL, text)
    text = _ID_CARD.sub(_LABEL_ID, text)
    text = _USCC.sub(_LABEL_CODE, text)
    text = _MOBILE.sub(_LABEL_PHONE, text)
    text = _LANDLINE.sub(_LABEL_PHONE, text)
    text = _LONG_NUMBER.sub(_LABEL_NUMBER, text)
    text = _COMPANY.sub(_company, text)
    text = _TITLE.sub(_titled, text)
    text = _INTRO.sub(lambda m: m.group(1) + m.group(2) + _LABEL_NAME, text)
    text = _CALLED.sub(lambda m: m.group(1) + m.group(2) + _LABEL_NAME, text)
    return _mask_person_names(text)


def _company(found: re.Match[str]) -> str:
    prefix = found.group(1)
    generic = list(_GENERIC.finditer(prefix))
    if generic:
        kept, prefix = prefix[: generic[-1].end()], prefix[generic[-1].end() :]
        if len(prefix) < 2:
            return found.group(0)
        return kept + _LABEL_ENTERPRISE
    return _LABEL_ENTERPRISE


def _titled(found: re.Match[str]) -> str:
    name = found.group(1)
    if name[0] in _NAME_SURNAMES:
        return _LABEL_NAME + found.group(2)
    return found.group(0)


_BEFORE_NAME = frozenset(
    [
        "我是",
        "是",
        "叫",
        "我叫",
        "找",
        "联系",
        "感谢",
        "谢谢",
        "请",
        "和",
        "跟",
        "给",
        "由",
        "经办人",
        "联系人",
        "负责人",
        "同事",
        ":",
        "：",
        "、",
        "，",
    ]
)
_AFTER_NAME = frozenset(
    [
        "专员",
        "经理",
        "先生",
        "女士",
        "老师",
        "同志",
        "师傅",
        "主任",
        "科长",
        "处长",
        "局长",
        "说",
        "讲",
        "已",
        "已经",
        "帮",
        "帮忙",
        "负责",
        "你好",
        "您好",
        "电话",
        "手机",
        "的电话",
        "的手机",
        "联系",
        "，",
        "、",
        "。",
        "：",
    ]
)
_COMMON_WORD_FREQ = 50
"""A word jieba's dictionary counts this often is a common word, even when tagged ``nr``."""


def _mask_person_names(text: str) -> str:
    """*text* with the person names jieba tags (``nr``) replaced: a name begins with a common
    surname, is not a common dictionary word (许可证, 顾客 …), and stands where a name does
    (after 我是/联系/感谢 …, or before 专员/经理/说/、 …)."""
    if not re.search(r"[\u4e00-\u9fa5]", text):
        return text
    tagger = _names_tagger()
    freq = tagger.tokenizer.FREQ
    words = [(w, f) for w, f in tagger.cut(text)]
    out: list[str] = []
    for i, (word, flag) in enumerate(words):
        name_like = (
            flag == "nr"
            and _CHINESE_NAME.match(word) is not None
            and len(word) <= 3
            and word[0] in _NAME_SURNAMES
            and (freq.get(word) or 0) < _COMMON_WORD_FREQ
        )
        before = words[i - 1][0] if i > 0 else ""
        after = words[i + 1][0] if i + 1 < len(words) else ""
        placed = i == 0 or before in _BEFORE_NAME or after in _AFTER_NAME or not after
        out.append(_LABEL_NAME if name_like and placed else word)
    return "".join(out)


def _words(kb: KnowledgeBase, text: str) -> list[str]:
    """The whole words of *text* as the knowledge base reads a question (what coverage and
    matched terms count; the search-mode sub-words are left out)."""
    return list(dict.fromkeys(kb.tokenizer.analyze_query(text).words))


def _same_question(a: str, b: str) -> bool:
    def key(text: str) -> str:
        return re.sub(r"[\s\W_]+", "", _fold(text))

    return key(a) == key(b)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _visible_tokens(tokens: Sequence[str], original: str, masked: str) -> list[str]:
    """*tokens* with the ones that came from masked text replaced by 〔隐去〕 (a token the
    question does not contain, such as a synonym the tokenizer added, is kept)."""
    before, after = _fold(original), _fold(masked)
    return [t if (t not in before or t in after) else "〔隐去〕" for t in tokens]


def _identity_known(identity: ChannelIdentity | None) -> list[tuple[str, str]]:
    if identity is None:
        return []
    known: list[tuple[str, str]] = []
    if identity.display_name:
        known.append((identity.display_name, _LABEL_NAME))
    if identity.contact_phone:
        known.append((identity.contact_phone, _LABEL_PHONE))
    if identity.user_key and len(identity.user_key) >= 6:
        known.append((identity.user_key, _LABEL_NUMBER))
    if identity.enterprise is not None:
        known.append((identity.enterprise.name, _LABEL_ENTERPRISE))
        known.append((identity.enterprise.uscc, _LABEL_CODE))
    return known


# --------------------------------------------------------------------------------- log


@dataclass(frozen=True)
class LogFilter:
    """Which turns of the log to show."""

    outcome: str | None = None
    entry_id: str | None = None
    day_from: date | None = None
    day_to: date | None = None
    channel: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    def __post_init__(self) -> None:
        if self.outcome and self.outcome not in OUTCOME_LABELS:
            options = "、".join(f"{v}（{label}）" for v, label in OUTCOME_LABELS.items())
            raise InputError(f"未知的结果「{self.outcome}」，应为 {options} 之一")
        if self.day_from and self.day_to and self.day_to < self.day_from:
            raise InputError("结束日期早于开始日期")
        if self.page < 1 or not 1 <= self.per_page <= 500:
            raise InputError("页码应从 1 开始，每页 1–500 条")


@dataclass(frozen=True)
class LogHit:
    """One logged hit: the entry, its score and coverage, the terms it matched."""

    entry_id: str
    title: str
    score: float
    coverage: float
    matched_terms: tuple[str, ...]


@dataclass(frozen=True)
class LogLine:
    """One question as an editor sees it (masked)."""

    id: int
    at: datetime
    channel: str
    question: str
    tokens: tuple[str, ...]
    hits: tuple[LogHit, ...]
    action: str
    action_label: str
    entry_id: str | None
    entry_title: str | None
    outcome: str
    outcome_label: str
    ticket_number: str | None


@dataclass(frozen=True)
class LogPage:
    """A page of the log and how many turns the filter kept."""

    lines: tuple[LogLine, ...]
    total: int
    page: int
    pages: int
    filter: LogFilter


@dataclass(frozen=True)
class EntryFigures:
    """How one entry fared: shown (among the top hits), answered, 已解决/未解决, tickets."""

    entry_id: str
    title: str
    department: str
    shown: int
    answered: int
    solved: int
    unsolved: int
    tickets: int

    @property
    def failed(self) -> int:
        """Answers that did not help plus the tickets that followed."""
        return self.unsolved + self.tickets

    @property
    def failure_rate(self) -> float:
        """Failed as a share of the times the entry was shown."""
        return self.failed / self.shown if self.shown else 0.0


@dataclass(frozen=True)
class ResolvedTicket:
    """A resolved ticket as an editor may see it: masked, without the enterprise."""

    number: str
    department: str
    title: str
    result: str
    resolved_at: datetime
    draft_id: int | None


# -------------------------------------------------------------------------------- hit test


@dataclass(frozen=True)
class TestedHit:
    """One hit of a hit test."""

    entry_id: str
    title: str
    department: str
    score: float
    coverage: float
    confidence: float
    matched_terms: tuple[str, ...]


@dataclass(frozen=True)
class HitTest:
    """A question → tokens, hits and the decision with its reason (``yxby kb test``)."""

    question: str
    tokens: tuple[str, ...]
    action: str
    action_label: str
    reason: str
    entry_id: str | None
    hits: tuple[TestedHit, ...]
    suggestions: tuple[str, ...]

    @classmethod
    def of(cls, decision: Decision, words: Sequence[str] | None = None) -> HitTest:
        """From a knowledge-base decision (*words*: the question's whole words, shown
        instead of every search token)."""
        from knowledge import Action

        top = decision.top
        hits = tuple(
            TestedHit(
                h.entry.id,
                h.entry.title,
                h.entry.department,
                round(h.score, 3),
                round(h.coverage, 3),
                round(h.confidence, 3),
                tuple(h.matched_terms),
            )
            for h in decision.hits
        )
        return cls(
            question=decision.text,
            tokens=tuple(words if words is not None else decision.tokens),
            action=decision.action.value,
            action_label=ACTION_LABELS.get(decision.action.value, decision.action.value),
            reason=decision.reason,
            entry_id=top.entry.id if top and decision.action is Action.ANSWER else None,
            hits=hits,
            suggestions=tuple(h.entry.id for h in decision.suggestions),
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "question": self.question,
            "tokens": list(self.tokens),
            "action": self.action,
            "reason": self.reason,
            "entry_id": self.entry_id,
            "suggestions": list(self.suggestions),
            "hits": [
                {
                    "entry_id": h.entry_id,
                    "title": h.title,
                    "score": h.score,
                    "coverage": h.coverage,
                    "confidence": h.confidence,
                    "matched_terms": list(h.matched_terms),
                }
                for h in self.hits
            ],
        }


def hit_test(kb: KnowledgeBase, question: str, limit: int = 5) -> HitTest:
    """What the bot would do with *question* and why (``InputError`` for an empty or too
    long question)."""
    decision = kb.decide(question, limit=limit)
    return HitTest.of(decision, _words(kb, decision.text) or None)


@dataclass(frozen=True)
class BatchRow:
    """One question of a batch hit test and how it went."""

    row: int
    question: str
    expected: str | None
    """The entry id expected; ``None``: the bot should not answer (expected ``none``)."""
    result: HitTest | None
    error: str | None = None

    @property
    def verdict(self) -> str:
        """pass, suggested (the expected entry only among the options), fail or error."""
        r = self.result
        if r is None:
            return "error"
        if self.expected is None:
            return "pass" if r.action != "answer" else "fail"
        if r.action == "answer" and r.entry_id == self.expected:
            return "pass"
        if r.action == "suggest" and self.expected in r.suggestions:
            return "suggested"
        return "fail"


VERDICT_LABELS = {"pass": "通过", "suggested": "在选项中", "fail": "未通过", "error": "无法检索"}


@dataclass(frozen=True)
class BatchReport:
    """Every row of a batch hit test and the counts."""

    rows: tuple[BatchRow, ...]

    @property
    def counts(self) -> Counter[str]:
        """Rows per verdict."""
        return Counter(r.verdict for r in self.rows)

    @property
    def rate(self) -> float:
        """Share of rows that passed."""
        return self.counts["pass"] / len(self.rows) if self.rows else 0.0

    def summary(self) -> str:
        """One Chinese line."""
        c = self.counts
        return (
            f"共 {len(self.rows)} 个问题：通过 {c['pass']}（{self.rate:.1%}），"
            f"在选项中 {c['suggested']}，未通过 {c['fail']}，无法检索 {c['error']}"
        )


_HEADER_WORDS = {"question", "问题", "问法", "expected", "预期条目", "条目", "entry", "entry_id"}


def read_batch(name: str, content: bytes) -> list[tuple[int, str, str | None]]:
    """(row number, question, expected entry id or ``None``) from an uploaded CSV or XLSX
    file: the first column is the question, the second the expected entry id (empty or
    ``none``: the bot should not answer); a header row is skipped. ``InputError`` (Chinese)
    for an unreadable file, no question, or more than 2000 rows."""
    suffix = Path(name).suffix.lower()
    raw: list[list[str]] = []
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise InputError(f"无法读取 XLSX 文件「{name}」：{exc}") from None
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            raw.append(["" if v is None else str(v) for v in values])
        book.close()
    elif suffix in (".csv", ".txt", ""):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = content.decode("gb18030")
            except UnicodeDecodeError:
                raise InputError(f"「{name}」不是 UTF-8 或 GB18030 编码的 CSV 文件") from None
        raw = [list(r) for r in csv.reader(io.StringIO(text))]
    else:
        raise InputError(f"只支持 CSV 或 XLSX 文件，收到「{name}」")
    rows: list[tuple[int, str, str | None]] = []
    for number, values in enumerate(raw, 1):
        cells = [v.strip() for v in values] + ["", ""]
        question, expected = cells[0], cells[1]
        if not question and not expected:
            continue
        if number == 1 and question.lower() in _HEADER_WORDS:
            continue
        if not question:
            raise InputError(f"第 {number} 行没有问题（第一列应为问题）")
        rows.append(
            (number, question, None if expected.lower() in ("", "none", "无") else expected)
        )
    if not rows:
        raise InputError(f"「{name}」中没有问题：第一列为问题，第二列为预期的条目编号")
    if len(rows) > MAX_BATCH_ROWS:
        raise InputError(f"一次最多检测 {MAX_BATCH_ROWS} 个问题，文件中有 {len(rows)} 个")
    return rows


def batch_hit_test(kb: KnowledgeBase, rows: Sequence[tuple[int, str, str | None]]) -> BatchReport:
    """Hit-test every row; an expected id the knowledge base lacks is a failing row."""
    out: list[BatchRow] = []
    for number, question, expected in rows:
        try:
            result = hit_test(kb, question)
        except InputError as exc:
            out.append(BatchRow(number, question, expected, None, str(exc)))
            continue
        error = None
        if expected is not None and kb.get(expected) is None:
            error = f"知识库中没有条目「{expected}」"
        out.append(BatchRow(number, question, expected, result, error))
    return BatchReport(tuple(out))


# ------------------------------------------------------------------------------ YAML


def _scalar(value: str) -> str:
    """*value* as a YAML scalar: plain when it reads back the same, else double-quoted."""
    plain = value.strip() == value and value and not re.search(r"[:#\[\]{},&*!|>'\"%@`]", value)
    if plain:
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _flow(items: Sequence[str]) -> str:
    return "[" + ", ".join(_scalar(i) for i in items) + "]"


def entry_yaml(entry: Mapping[str, Any]) -> str:
    """One entry as a YAML list item, in the style of ``knowledge/entries`` (block
    questions, a folded answer, flow keywords and tags)."""
    lines = [f"- id: {_scalar(str(entry['id']))}", f"  title: {_scalar(str(entry['title']))}"]
    lines.append("  questions:")
    lines += [f"    - {_scalar(str(q))}" for q in entry["questions"]]
    answer = str(entry.get("answer", "")).strip()
    if not answer:
        lines.append('  answer: ""')
    else:
        style = "|-" if "\n" in answer else ">-"
        lines.append(f"  answer: {style}")
        lines += [f"    {line}" if line.strip() else "" for line in answer.splitlines()]
    lines.append(f"  department: {_scalar(str(entry['department']))}")
    if entry.get("keywords"):
        lines.append(f"  keywords: {_flow(entry['keywords'])}")
    if entry.get("tags"):
        lines.append(f"  tags: {_flow(entry['tags'])}")
    source = entry.get("source") or {}
    lines.append("  source:")
    lines.append(f"    document: {_scalar(str(source.get('document', '')))}")
    for key in ("section", "url"):
        if source.get(key):
            lines.append(f"    {key}: {_scalar(str(source[key]))}")
    lines.append(f"  updated: {entry['updated']}")
    for key in ("effective", "expires"):
        if entry.get(key):
            lines.append(f"  {key}: {entry[key]}")
    return "\n".join(lines) + "\n"


def _append_entry(old: str | None, chunk: str) -> str:
    """The text of a file after *chunk* (one list item) is appended: to its list when the
    file's last document is a top-level list, else as a new document."""
    if old is None or not old.strip():
        return chunk
    body = old if old.endswith("\n") else old + "\n"
    try:
        docs = list(yaml.safe_load_all(old))
    except yaml.YAMLError:
        raise DraftError("目标文件本身有 YAML 错误，请先修正（yxby kb lint）") from None
    last = docs[-1] if docs else None
    if isinstance(last, list):
        return body + "\n" + chunk
    return body + "---\n" + chunk


def _insert_wording(text: str, line: int, question: str) -> str:
    """*text* with *question* added after the question list item on *line* (1-based), or
    into a one-line flow list on that line."""
    lines = text.splitlines(keepends=True)
    at = line - 1
    if not 0 <= at < len(lines):
        raise DraftError("找不到条目的问法所在的行，请下载补丁后手工编辑")
    current = lines[at]
    item = re.match(r"^(\s*)-\s", current)
    if item:
        indent = len(item.group(1))
        end = at + 1
        while (
            end < len(lines)
            and lines[end].strip()
            and (len(lines[end]) - len(lines[end].lstrip()) > indent)
        ):
            end += 1
        newline = "\n" if current.endswith("\n") else ""
        if not newline:
            lines[at] = current + "\n"
        lines.insert(end, f"{item.group(1)}- {_scalar(question)}\n")
        return "".join(lines)
    flow = re.match(r"^(\s*questions:\s*\[.*)\](\s*(#.*)?)$", current.rstrip("\n"))
    if flow:
        newline = "\n" if current.endswith("\n") else ""
        lines[at] = f"{flow.group(1)}, {json.dumps(question, ensure_ascii=False)}]{flow.group(2)}"
        lines[at] += newline
        return "".join(lines)
    raise DraftError("该条目的问法写法无法自动追加，请下载补丁后手工编辑")


def _relative_name(name: str) -> str:
    cleaned = name.strip().replace("\\", "/")
    if not re.fullmatch(r"[A-Za-z0-9_\-/.]{1,120}\.ya?ml", cleaned) or ".." in cleaned.split("/"):
        raise DraftError(f"文件名「{name}」不可用：应为知识库目录下的 .yaml 文件，如 cases.yaml")
    return cleaned.lstrip("/")


@dataclass(frozen=True)
class DraftPreview:
    """What writing a draft would change: the file, its new text, the patch and the lint."""

    draft_id: int
    path: Path
    relative: str
    old_text: str | None
    new_text: str
    patch: str
    issues: tuple[LintIssue, ...]

    @property
    def errors(self) -> tuple[LintIssue, ...]:
        """The issues that stop the draft from being written."""
        from knowledge.lint import Severity

        return tuple(i for i in self.issues if i.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        """No error: the draft may be written."""
        return not self.errors


# ---------------------------------------------------------------------------- service


@dataclass
class Editors:
    """The editors' services on *sessions*; the knowledge base comes from *kb* (called each
    time, so a reloaded one is used), drafts are written under *knowledge_dir* only when
    *writable*."""

    sessions: sessionmaker[Session]
    kb: Callable[[], KnowledgeBase]
    knowledge_dir: Path
    clock: Callable[[], datetime]
    departments: Mapping[str, str] = field(default_factory=dict)
    writable: bool = False
    default_department: str = "政务办"
    _terms: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _terms_of: object = field(default=None, init=False, repr=False)
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -------------------------------------------------------------- access

    @staticmethod
    def check(person: Person) -> None:
        """:class:`EditorOnly` unless *person* is a 编辑 or 管理员."""
        if not can_edit_knowledge(person):
            raise EditorOnly()

    def today(self) -> date:
        """Today in Asia/Shanghai."""
        return self.clock().astimezone(SHANGHAI).date()

    def _matched(self, kb: KnowledgeBase, entry_id: str, tokens: Sequence[str]) -> tuple[str, ...]:
        """The *tokens* that occur in the entry (title, questions, keywords, answer)."""
        served = getattr(kb, "current", kb)  # a live knowledge base: the index in force
        if self._terms_of is not served:  # a reloaded knowledge base: forget the old terms
            self._terms.clear()
            self._terms_of = served
        terms = self._terms.get(entry_id)
        if terms is None:
            entry = kb.get(entry_id)
            if entry is None:
                return ()
            text = " ".join((entry.title, *entry.questions, *entry.keywords, entry.answer))
            terms = self._terms[entry_id] = frozenset(kb.tokenizer.tokenize(text))
        return tuple(dict.fromkeys(t for t in tokens if t in terms))

    # ---------------------------------------------------------------- log

    def log(self, wanted: LogFilter | None = None) -> LogPage:
        """A page of the conversation log (newest first), masked."""
        wanted = wanted or LogFilter()
        stmt = select(DialogueTurn, ChannelIdentity.channel).join(
            ChannelIdentity, ChannelIdentity.id == DialogueTurn.channel_identity_id
        )
        stmt = stmt.where(DialogueTurn.action.is_not(None))
        if wanted.outcome:
            stmt = stmt.where(DialogueTurn.outcome == TurnOutcome(wanted.outcome))
        if wanted.entry_id:
            escaped = re.sub(r"([\\%_])", r"\\\1", wanted.entry_id)
            like = f'%"{escaped}"%'
            stmt = stmt.where(
                or_(
                    DialogueTurn.entry_id == wanted.entry_id,
                    cast(DialogueTurn.hits, Text).like(like, escape="\\"),
                )
            )
        if wanted.day_from:
            stmt = stmt.where(DialogueTurn.at >= _day_start(wanted.day_from))
        if wanted.day_to:
            stmt = stmt.where(DialogueTurn.at < _day_start(wanted.day_to + timedelta(days=1)))
        if wanted.channel:
            stmt = stmt.where(ChannelIdentity.channel == wanted.channel)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            page = min(wanted.page, max(1, -(-total // wanted.per_page)))
            rows = session.execute(
                stmt.order_by(DialogueTurn.at.desc(), DialogueTurn.id.desc())
                .offset((page - 1) * wanted.per_page)
                .limit(wanted.per_page)
            ).all()
            known = self._known_of_identities(session, {t.channel_identity_id for t, _ in rows})
            tickets = self._ticket_numbers(session, {t.ticket_id for t, _ in rows if t.ticket_id})
            lines = tuple(
                self._line(turn, channel, known.get(turn.channel_identity_id, []), tickets)
                for turn, channel in rows
            )
        pages = max(1, -(-total // wanted.per_page))
        return LogPage(lines, total, page, pages, wanted)

    def _known_of_identities(
        self, session: Session, ids: set[int]
    ) -> dict[int, list[tuple[str, str]]]:
        if not ids:
            return {}
        identities = session.scalars(select(ChannelIdentity).where(ChannelIdentity.id.in_(ids)))
        people = self._people(session)
        return {i.id: _identity_known(i) + people for i in identities}

    @staticmethod
    def _people(session: Session) -> list[tuple[str, str]]:
        names = session.scalars(select(Commissioner.name)).all()
        return [(n, _LABEL_NAME) for n in names]

    @staticmethod
    def _ticket_numbers(session: Session, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = session.execute(select(Ticket.id, Ticket.number).where(Ticket.id.in_(ids)))
        return {i: n for i, n in rows}

    def _line(
        self,
        turn: DialogueTurn,
        channel: str,
        known: list[tuple[str, str]],
        tickets: Mapping[int, str],
    ) -> LogLine:
        kb = self.kb()
        masked = mask(turn.text, known)
        words = _words(kb, turn.text) or list(turn.tokens or [])
        tokens = _visible_tokens(words, turn.text, masked)
        query = [t for t in tokens if t != "〔隐去〕"]
        hits = []
        for raw in turn.hits or []:
            entry = kb.get(str(raw.get("id", "")))
            hits.append(
                LogHit(
                    entry_id=str(raw.get("id", "")),
                    title=entry.title if entry else "（已不在知识库中）",
                    score=float(raw.get("score", 0.0)),
                    coverage=float(raw.get("coverage", 0.0)),
                    matched_terms=self._matched(kb, entry.id, query) if entry else (),
                )
            )
        answered = kb.get(turn.entry_id) if turn.entry_id else None
        outcome = turn.outcome.value
        return LogLine(
            id=turn.id,
            at=turn.at,
            channel=channel,
            question=masked,
            tokens=tuple(tokens),
            hits=tuple(hits),
            action=turn.action or "",
            action_label=ACTION_LABELS.get(turn.action or "", turn.action or ""),
            entry_id=turn.entry_id,
            entry_title=answered.title if answered else None,
            outcome=outcome,
            outcome_label=OUTCOME_LABELS.get(outcome, outcome),
            ticket_number=tickets.get(turn.ticket_id) if turn.ticket_id else None,
        )

    def channels(self) -> list[str]:
        """The channels the log has questions from."""
        with self.sessions() as session:
            stmt = (
                select(ChannelIdentity.channel)
                .join(DialogueTurn, DialogueTurn.channel_identity_id == ChannelIdentity.id)
                .where(DialogueTurn.action.is_not(None))
                .distinct()
                .order_by(ChannelIdentity.channel)
            )
            return list(session.scalars(stmt))

    # ------------------------------------------------------------- figures

    def entry_figures(self, since: datetime | None = None) -> list[EntryFigures]:
        """Per entry, since *since* (all time by default): how often it was shown among the
        top hits, given as the answer, 已解决/未解决, and the tickets that followed (the entry
        was the answer or the top hit); the worst first (failure share, then failures)."""
        stmt = select(
            DialogueTurn.hits, DialogueTurn.entry_id, DialogueTurn.outcome, DialogueTurn.ticket_id
        ).where(DialogueTurn.action.is_not(None))
        if since is not None:
            stmt = stmt.where(DialogueTurn.at >= since)
        shown: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        solved: Counter[str] = Counter()
        unsolved: Counter[str] = Counter()
        tickets: Counter[str] = Counter()
        with self.sessions() as session:
            for hits, entry_id, outcome, ticket_id in session.execute(stmt):
                ids = list(dict.fromkeys(str(h.get("id")) for h in hits or [] if h.get("id")))
                shown.update(ids)
                if entry_id and entry_id not in ids:
                    shown[entry_id] += 1
                if entry_id:
                    answered[entry_id] += 1
                    if outcome is TurnOutcome.SOLVED:
                        solved[entry_id] += 1
                    elif outcome is TurnOutcome.UNSOLVED:
                        unsolved[entry_id] += 1
                if outcome is TurnOutcome.TICKET or ticket_id is not None:
                    blamed = entry_id or (ids[0] if ids else None)
                    if blamed:
                        tickets[blamed] += 1
        kb = self.kb()
        figures = []
        for entry_id in shown:
            entry = kb.get(entry_id)
            figures.append(
                EntryFigures(
                    entry_id=entry_id,
                    title=entry.title if entry else "（已不在知识库中）",
                    department=entry.department if entry else "—",
                    shown=shown[entry_id],
                    answered=answered[entry_id],
                    solved=solved[entry_id],
                    unsolved=unsolved[entry_id],
                    tickets=tickets[entry_id],
                )
            )
        figures.sort(key=lambda f: (-f.failure_rate, -f.failed, -f.shown, f.entry_id))
        return figures

    # ---------------------------------------------------------------- gaps

    def gaps(self, days: int = 30) -> list[tuple[Any, list[tuple[str, int]]]]:
        """The gap groups of :mod:`handoff.reports` over the last *days*, each with its
        masked example questions and counts."""
        from handoff.reports import gap_groups, unanswered_turns

        with self.sessions() as session:
            turns = unanswered_turns(session, self.clock() - timedelta(days=days))
            people = self._people(session)
        masked = []
        for text, tokens in turns:
            hidden = mask(text, people)
            masked.append(
                (hidden, [t for t in _visible_tokens(tokens, text, hidden) if t != "〔隐去〕"])
            )
        groups = gap_groups(masked, kb=self.kb())
        return [(g, g.questions.most_common()) for g in groups]

    # ------------------------------------------------------------- tickets

    def resolved_tickets(self, limit: int = 50) -> list[ResolvedTicket]:
        """Resolved tickets with a result, newest first, masked (for 服务案例 drafts)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(Ticket)
                .where(Ticket.state.in_(RESOLVED_STATES), Ticket.result.is_not(None))
                .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
                .limit(limit)
            ).all()
            drafts = dict(
                session.execute(
                    select(KnowledgeDraft.source_ref, func.max(KnowledgeDraft.id))
                    .where(KnowledgeDraft.source_kind == "ticket")
                    .group_by(KnowledgeDraft.source_ref)
                ).all()
            )
            people = self._people(session)
            return [
                ResolvedTicket(
                    number=t.number,
                    department=t.department,
                    title=mask(t.title, self._ticket_known(t) + people),
                    result=mask(t.result or "", self._ticket_known(t) + people),
                    resolved_at=t.updated_at,
                    draft_id=drafts.get(t.number),
                )
                for t in rows
            ]

    @staticmethod
    def _ticket_known(ticket: Ticket) -> list[tuple[str, str]]:
        known = _identity_known(ticket.channel_identity)
        if ticket.enterprise is not None:
            known += [
                (ticket.enterprise.name, _LABEL_ENTERPRISE),
                (ticket.enterprise.uscc, _LABEL_CODE),
            ]
        if ticket.commissioner is not None:
            known.append((ticket.commissioner.name, _LABEL_NAME))
            if ticket.commissioner.phone:
                known.append((ticket.commissioner.phone, _LABEL_PHONE))
        known += [(e.actor, _LABEL_NAME) for e in ticket.events if e.actor]
        return known

    # -------------------------------------------------------------- drafts

    def _draft_entry(self, **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "id": "",
            "title": "",
            "questions": [],
            "answer": "",
            "department": self.default_department,
            "keywords": [],
            "tags": ["待审核"],
            "source": {
                "document": "企业服务常见问题（编辑起草，待审核）",
                "section": None,
                "url": None,
            },
            "updated": self.today().isoformat(),
        }
        base.update(fields)
        return base

    def _add(self, session: Session, draft: KnowledgeDraft) -> int:
        session.add(draft)
        session.flush()
        if draft.kind is not KnowledgeDraftKind.WORDING and not draft.entry.get("id"):
            draft.entry = {**draft.entry, "id": f"draft-{self.today():%Y%m%d}-{draft.id}"}
        return draft.id

    def _turn_question(self, session: Session, turn_id: int) -> tuple[str, DialogueTurn]:
        turn = session.get(DialogueTurn, turn_id)
        if turn is None or turn.action is None:
            raise DraftError(f"对话记录 {turn_id} 不存在")
        identity = session.get(ChannelIdentity, turn.channel_identity_id)
        question = mask(turn.text, _identity_known(identity) + self._people(session)).strip()
        return question, turn

    def draft_wording(
        self,
        person: Person,
        entry_id: str,
        *,
        turn_id: int | None = None,
        question: str | None = None,
        by: str,
    ) -> int:
        """A draft adding a wording (from log line *turn_id*, or *question*) to *entry_id*."""
        self.check(person)
        if self.kb().get(entry_id) is None:
            raise DraftError(f"知识库中没有条目「{entry_id}」")
        now = self.clock()
        with self.sessions.begin() as session:
            if turn_id is not None:
                text, _ = self._turn_question(session, turn_id)
            else:
                text = mask((question or "").strip())
            if not text:
                raise DraftError("请填写要补充的问法")
            draft = KnowledgeDraft(
                kind=KnowledgeDraftKind.WORDING,
                status=KnowledgeDraftStatus.DRAFT,
                target_entry_id=entry_id,
                entry={"question": text[:200]},
                source_kind="turn" if turn_id is not None else "manual",
                source_ref=str(turn_id) if turn_id is not None else None,
                created_by=by,
                created_at=now,
                updated_at=now,
            )
            return self._add(session, draft)

    def draft_entry(
        self,
        person: Person,
        *,
        turn_id: int | None = None,
        gap: Sequence[str] | None = None,
        question: str | None = None,
        by: str,
    ) -> int:
        """A draft of a new entry from log line *turn_id*, a gap group (its terms; the
        group's example questions become the wordings) or a bare *question*."""
        self.check(person)
        now = self.clock()
        questions: list[str] = []
        source_kind, ref = "manual", None
        department = self.default_department
        with self.sessions.begin() as session:
            if turn_id is not None:
                text, turn = self._turn_question(session, turn_id)
                questions = [text]
                source_kind, ref = "turn", str(turn_id)
                top = (
                    self.kb().get(str((turn.hits or [{}])[0].get("id", ""))) if turn.hits else None
                )
                if top is not None:
                    department = top.department
            elif gap:
                wanted = tuple(sorted(gap))
                for group, examples in self.gaps(days=3650):
                    if tuple(sorted(group.terms)) == wanted:
                        questions = [q for q, _ in examples[:8]]
                        break
                if not questions:
                    raise DraftError(f"没有找到共同词为「{'、'.join(gap)}」的未解决问题组")
                source_kind, ref = "gap", "、".join(wanted)
            else:
                text = mask((question or "").strip())
                if not text:
                    raise DraftError("请填写问题")
                questions = [text]
            questions = list(dict.fromkeys(q[:200] for q in questions if q))
            draft = KnowledgeDraft(
                kind=KnowledgeDraftKind.ENTRY,
                status=KnowledgeDraftStatus.DRAFT,
                target_file="editors.yaml",
                entry=self._draft_entry(
                    title=questions[0][:80], questions=questions, department=department
                ),
                source_kind=source_kind,
                source_ref=ref,
                created_by=by,
                created_at=now,
                updated_at=now,
            )
            return self._add(session, draft)

    def draft_case(self, person: Person, number: str, *, by: str) -> int:
        """A draft 服务案例 from the resolved ticket *number*: its masked description as the
        question, the commissioner's result as the answer; no enterprise name, credit code,
        phone or person's name."""
        self.check(person)
        now = self.clock()
        with self.sessions.begin() as session:
            ticket = session.scalars(
                select(Ticket).where(Ticket.number == number.strip().upper())
            ).one_or_none()
            if ticket is None:
                raise DraftError(f"没有编号为 {number.strip()} 的工单")
            if ticket.state not in RESOLVED_STATES or not (ticket.result or "").strip():
                raise DraftError(f"工单 {ticket.number} 尚未办结，不能整理为服务案例")
            known = self._ticket_known(ticket) + self._people(session)
            title = mask(ticket.title, known).strip()
            description = mask(ticket.description, known).strip()
            questions = list(dict.fromkeys(q for q in (title, description[:200]) if q))
            entry = self._draft_entry(
                title=title[:80],
                questions=questions,
                answer=mask(ticket.result or "", known).strip(),
                department=ticket.department,
                tags=["服务案例", "待审核"],
                source={
                    "document": "企业服务案例（由已办结诉求整理，待审核）",
                    "section": ticket.department,
                    "url": None,
                },
            )
            draft = KnowledgeDraft(
                kind=KnowledgeDraftKind.CASE,
                status=KnowledgeDraftStatus.DRAFT,
                target_file="cases.yaml",
                entry=entry,
                source_kind="ticket",
                source_ref=ticket.number,
                created_by=by,
                created_at=now,
                updated_at=now,
            )
            return self._add(session, draft)

    def drafts(self, *, include_closed: bool = False) -> list[KnowledgeDraft]:
        """The drafts, newest change first (open ones only unless *include_closed*)."""
        with self.sessions() as session:
            stmt = select(KnowledgeDraft)
            if not include_closed:
                stmt = stmt.where(
                    KnowledgeDraft.status.in_(
                        (KnowledgeDraftStatus.DRAFT, KnowledgeDraftStatus.REVIEWED)
                    )
                )
            rows = list(
                session.scalars(
                    stmt.order_by(KnowledgeDraft.updated_at.desc(), KnowledgeDraft.id.desc())
                )
            )
            session.expunge_all()
            return rows

    def draft(self, draft_id: int) -> KnowledgeDraft:
        """One draft (``DraftError`` when there is none)."""
        with self.sessions() as session:
            row = session.get(KnowledgeDraft, draft_id)
            if row is None:
                raise DraftError(f"草稿 {draft_id} 不存在")
            session.expunge(row)
            return row

    def update(self, person: Person, draft_id: int, values: Mapping[str, str], *, by: str) -> None:
        """Change a draft from form *values* (one wording/keyword per line); a change sends
        a reviewed draft back to 草稿."""
        self.check(person)
        with self.sessions.begin() as session:
            row = self._open(session, draft_id)
            if row.kind is KnowledgeDraftKind.WORDING:
                question = values.get("question", "").strip()
                if not question:
                    raise DraftError("请填写要补充的问法")
                entry_id = values.get("target_entry_id", row.target_entry_id or "").strip()
                if self.kb().get(entry_id) is None:
                    raise DraftError(f"知识库中没有条目「{entry_id}」")
                row.target_entry_id = entry_id
                row.entry = {"question": question[:200]}
            else:
                row.entry = _entry_from_form(row.entry, values)
                if "target_file" in values:
                    row.target_file = _relative_name(values["target_file"])
            row.status = KnowledgeDraftStatus.DRAFT
            row.reviewed_by = row.reviewed_at = None
            row.updated_at = self.clock()

    def _open(self, session: Session, draft_id: int) -> KnowledgeDraft:
        row = session.get(KnowledgeDraft, draft_id)
        if row is None:
            raise DraftError(f"草稿 {draft_id} 不存在")
        if row.status in (KnowledgeDraftStatus.WRITTEN, KnowledgeDraftStatus.DISCARDED):
            raise DraftError(f"草稿 {draft_id} {row.status.label}，不能再修改")
        return row

    def discard(self, person: Person, draft_id: int, *, by: str) -> None:
        """Drop a draft (it stays in the table as 已放弃)."""
        self.check(person)
        with self.sessions.begin() as session:
            row = self._open(session, draft_id)
            row.status = KnowledgeDraftStatus.DISCARDED
            row.updated_at = self.clock()

    def review(self, person: Person, draft_id: int, *, by: str) -> DraftPreview:
        """Lint the draft and, when it has no error, mark it 已审核 by *by*."""
        self.check(person)
        preview = self.preview(draft_id)
        if not preview.ok:
            raise DraftError(
                "草稿有错误，不能通过审核：" + "；".join(i.message for i in preview.errors)
            )
        with self.sessions.begin() as session:
            row = self._open(session, draft_id)
            row.status = KnowledgeDraftStatus.REVIEWED
            row.reviewed_by, row.reviewed_at = by, self.clock()
        return preview

    # ------------------------------------------------------- preview/write

    def _target(self, row: KnowledgeDraft) -> tuple[Path, str | None, str]:
        """(file, its text now or ``None``, its new text) for *row*."""
        from knowledge.loader import read_entries

        if row.kind is KnowledgeDraftKind.WORDING:
            located, _ = read_entries(self.knowledge_dir)
            found = next((le for le in located if le.entry.id == row.target_entry_id), None)
            if found is None:
                raise DraftError(f"知识库文件中没有条目「{row.target_entry_id}」")
            path = Path(found.path)
            text = path.read_text(encoding="utf-8")
            last = len(found.entry.questions) - 1
            line = found.line_of("questions", last)
            return path, text, _insert_wording(text, line, str(row.entry.get("question", "")))
        path = self.knowledge_dir / _relative_name(row.target_file or "editors.yaml")
        old = path.read_text(encoding="utf-8") if path.exists() else None
        return path, old, _append_entry(old, entry_yaml(row.entry))

    def _relative(self, path: Path) -> str:
        for base in (paths.PROJECT_ROOT, self.knowledge_dir):
            try:
                return path.resolve().relative_to(base.resolve()).as_posix()
            except ValueError:
                continue
        return path.name

    def preview(self, draft_id: int) -> DraftPreview:
        """What writing the draft would change, and the lint of the result (the rules of
        ``yxby kb lint``, on a copy of the knowledge directory with the draft applied)."""
        row = self.draft(draft_id)
        path, old, new = self._target(row)
        issues = self._lint(row, path, old, new)
        rel = self._relative(path)
        patch = "".join(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{rel}" if old is not None else "/dev/null",
                tofile=f"b/{rel}",
            )
        )
        return DraftPreview(draft_id, path, rel, old, new, patch, issues)

    def _lint(
        self, row: KnowledgeDraft, path: Path, old: str | None, new: str
    ) -> tuple[LintIssue, ...]:
        from knowledge.lint import LintIssue, Severity, lint

        entry_id = (
            row.target_entry_id
            if row.kind is KnowledgeDraftKind.WORDING
            else str(row.entry.get("id", ""))
        )
        start = (
            len((old or "").splitlines()) + 1 if row.kind is not KnowledgeDraftKind.WORDING else 1
        )
        with tempfile.TemporaryDirectory(prefix="yxby-draft-") as tmp:
            copy = Path(tmp) / "entries"
            shutil.copytree(self.knowledge_dir, copy)
            target = copy / path.resolve().relative_to(self.knowledge_dir.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(new, encoding="utf-8")
            found = lint(copy, departments=self.departments or None, today=self.today())
            mine = []
            for issue in found:
                in_target = Path(issue.path).resolve() == target.resolve()
                about = f"[{entry_id}]" in issue.message
                unnamed = not issue.message.startswith("[")  # a YAML error of the file
                if about or (in_target and issue.line >= start and unnamed):
                    mine.append(LintIssue(str(path), issue.line, issue.severity, issue.message))
            from knowledge.loader import read_entries

            located, _ = read_entries(copy)
            loaded = next((le.entry for le in located if le.entry.id == entry_id), None)
            if loaded is None and not any(i.severity is Severity.ERROR for i in mine):
                mine.append(
                    LintIssue(str(path), start, Severity.ERROR, f"[{entry_id}] 写入后条目未能加载")
                )
            if row.kind is KnowledgeDraftKind.WORDING and loaded is not None:
                question = str(row.entry.get("question", ""))
                already = [q for q in loaded.questions if _same_question(q, question)]
                if len(already) > 1:
                    mine.append(
                        LintIssue(
                            str(path),
                            start,
                            Severity.ERROR,
                            f"[{entry_id}] 条目已有问法「{already[0]}」",
                        )
                    )
                if question not in loaded.questions:
                    mine.append(
                        LintIssue(
                            str(path),
                            start,
                            Severity.ERROR,
                            f"[{entry_id}] 写入后没有读到新问法「{question}」",
                        )
                    )
        return tuple(mine)

    def write(self, person: Person, draft_id: int, *, by: str) -> DraftPreview:
        """Write a reviewed draft into the knowledge directory (all or nothing); raises
        :class:`NotWritable` unless ``YXBY_KNOWLEDGE_WRITABLE`` was set at start."""
        self.check(person)
        if not self.writable:
            raise NotWritable()
        with self._write_lock:  # two drafts for one file: one after the other
            row = self.draft(draft_id)
            if row.status is not KnowledgeDraftStatus.REVIEWED:
                raise DraftError(f"草稿 {draft_id} 需先通过审核（当前：{row.status.label}）")
            preview = self.preview(draft_id)
            if not preview.ok:
                errors = "；".join(i.message for i in preview.errors)
                raise DraftError("草稿有错误，未写入：" + errors)
            written = False
            try:
                with self.sessions.begin() as session:
                    locked = session.get(KnowledgeDraft, draft_id, with_for_update=True)
                    if locked is None or locked.status is not KnowledgeDraftStatus.REVIEWED:
                        raise DraftError(f"草稿 {draft_id} 已被他人处理，请刷新")
                    _replace(preview.path, preview.new_text)
                    written = True
                    locked.status = KnowledgeDraftStatus.WRITTEN
                    locked.written_by, locked.written_at = by, self.clock()
                    locked.written_path = preview.relative
                    locked.updated_at = self.clock()
            except BaseException:
                if written:  # the database did not take it: the file goes back as it was
                    _restore(preview.path, preview.old_text)
                raise
        return preview


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _restore(path: Path, old: str | None) -> None:
    if old is None:
        path.unlink(missing_ok=True)
    else:
        _replace(path, old)


def _lines(value: str) -> list[str]:
    return [p.strip() for p in re.split(r"[\n\r]+", value) if p.strip()]


def _items(value: str) -> list[str]:
    return [p.strip() for p in re.split(r"[\n\r,，、;；]+", value) if p.strip()]


def _entry_from_form(entry: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    out = dict(entry)
    for key in ("id", "title", "answer", "department"):
        if key in values:
            out[key] = values[key].strip()
    if "questions" in values:
        out["questions"] = list(dict.fromkeys(_lines(values["questions"])))
    for key in ("keywords", "tags"):
        if key in values:
            out[key] = list(dict.fromkeys(_items(values[key])))
    source = dict(out.get("source") or {})
    for key in ("document", "section", "url"):
        form_key = f"source_{key}"
        if form_key in values:
            source[key] = values[form_key].strip() or None
    out["source"] = source
    for key in ("effective", "expires"):
        if key in values:
            value = values[key].strip()
            if value:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise DraftError(f"{key} 应为日期，如 2027-01-01，收到「{value}」") from None
            out[key] = value or None
    return out


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)
