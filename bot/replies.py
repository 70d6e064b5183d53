"""User-facing texts from ``config/replies.yaml``, checked at start-up.

Every key the code uses must exist, and every ``{placeholder}`` of a template must be one the
code fills in; both are verified when the file is loaded, so a wording mistake stops start-up
with file, line and key instead of reaching a user.
"""

from __future__ import annotations

import string
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field, StringConstraints, model_validator

from handoff.calendar import SHANGHAI
from yxby.errors import ConfigError
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_documents, load_model

__all__ = [
    "PLACEHOLDERS",
    "PROVISIONAL",
    "PROVISIONAL_NOTE",
    "CannedReplies",
    "CannedReply",
    "CannedUse",
    "Replies",
    "clock_due",
    "format_due",
    "load_canned_replies",
    "load_replies",
]

WEEKDAYS = "一二三四五六日"


PROVISIONAL = "暂定"
"""The mark of a deadline counted over a year without a published holiday schedule."""
PROVISIONAL_NOTE = f"{PROVISIONAL}：该年放假安排尚未公布，按法定节假日推算，公布后以正式安排为准"
"""Why a deadline is marked 暂定 (a year without a published schedule, handoff.calendar)."""


def format_due(at: datetime, *, provisional: bool = False) -> str:
    """``2026年11月30日（周一）`` in Shanghai time: a deadline as users read it;
    ``（周二，暂定）`` when it was counted over a year without a published schedule."""
    local = at.astimezone(SHANGHAI)
    day = f"周{WEEKDAYS[local.weekday()]}" + (f"，{PROVISIONAL}" if provisional else "")
    return f"{local.year}年{local.month}月{local.day}日（{day}）"


class _Deadline(Protocol):
    @property
    def due_at(self) -> datetime: ...
    @property
    def calendar_fallback(self) -> bool: ...


def clock_due(clock: _Deadline) -> str:
    """A clock's deadline as users read it (:func:`format_due`, 暂定 when it is)."""
    return format_due(clock.due_at, provisional=clock.calendar_fallback)


# key → the placeholders the engine provides for it
PLACEHOLDERS: dict[str, frozenset[str]] = {
    key: frozenset(names.split()) if names else frozenset()
    for key, names in {
        "welcome": "",
        "menu": "",
        "answer": "answer source department",
        "answer_related": "titles",
        "ask_solved": "",
        "solved_buttons_yes": "",
        "solved_buttons_no": "",
        "solved_thanks": "",
        "suggest": "",
        "suggest_none_of_these": "",
        "suggest_hint": "",
        "choice_out_of_range": "number count",
        "number_without_choices": "",
        "not_found": "",
        "offer_ticket": "contact_days done_days",
        "offer_ticket_yes": "",
        "offer_ticket_no": "",
        "offer_declined": "",
        "collect_description": "min_chars",
        "collect_description_short": "min_chars",
        "collect_enterprise": "",
        "collect_enterprise_invalid": "value reason",
        "collect_enterprise_name_invalid": "",
        "collect_phone": "",
        "collect_phone_invalid": "value",
        "collect_confirm": "description enterprise phone department",
        "collect_confirm_yes": "",
        "collect_confirm_no": "",
        "collect_confirm_hint": "",
        "collect_edit_add": "",
        "collect_edit_enterprise": "",
        "collect_edit_phone": "",
        "collect_detail": "question",
        "collect_detail_skip": "",
        "collect_description_after": "min_chars question",
        "collect_description_not_need": "value",
        "small_talk_hello": "",
        "small_talk_thanks": "",
        "small_talk_ok": "",
        "small_talk_bye": "",
        "urge_sent": "number department due",
        "rate_ask_reason": "",
        "rate_reason_saved": "number",
        "relay_from_staff": "who text",
        "staff_handoff_user_ended": "who",
        "staff_no_commissioner_head": "department",
        "staff_no_commissioner_oversight": "department",
        "staff_transferred": "actor source reason",
        "staff_reopened": "number title contact_due done_due",
        "staff_survey_comment": "number result comment",
        "oversight_unsatisfied": "number title department commissioner",
        "staff_urged": "number title note",
        "staff_supervised": "level number title department note",
        "staff_assist_invited": "number title lead reason",
        "staff_assigned": "number title actor",
        "staff_prompt_resolve": "number",
        "staff_prompt_transfer": "number",
        "staff_prompt_assist": "number",
        "staff_nobody_waiting": "",
        "staff_no_chat": "",
        "staff_chat_ended": "who",
        "staff_queue_empty": "department",
        "staff_queue_header": "department",
        "staff_ticket_not_found": "number",
        "staff_no_transcript": "number",
        "staff_transcript_header": "number count shown",
        "staff_handoff_not_found": "",
        "staff_accepted": "number",
        "staff_transferred_done": "number department",
        "staff_assist_done": "number helpers",
        "staff_resolved": "number",
        "staff_action_failed": "reason",
        "too_many_invalid": "",
        "ticket_created": "number department contact_due done_due",
        "ticket_create_failed": "",
        "cancelled": "",
        "nothing_to_cancel": "",
        "timeout_reset": "",
        "empty_message": "",
        "too_long": "length limit",
        "no_text": "",
        "voice_unrecognised": "",
        "emoji_only": "",
        "internal_error": "",
        "status_none": "",
        "status_header": "count",
        "status_line": "number state department title",
        "status_due": "clock due",
        "status_not_found": "number",
        "status_detail": "number state department created description",
        "status_result": "result",
        "bind_usage": "",
        "bind_invalid": "value reason",
        "bind_unknown": "uscc",
        "bind_done": "name uscc",
        "bind_refused": "reason",
        "bind_verified_already": "name uscc",
        "verify_usage": "",
        "verify_done": "name uscc",
        "verify_failed": "reason",
        "my_commissioner": "enterprise name department phone duties",
        "my_commissioner_duties_default": "",
        "my_commissioner_no_phone": "",
        "my_commissioner_unverified": "",
        "my_commissioner_unbound": "",
        "my_commissioner_unassigned": "enterprise",
        "notices_off_done": "",
        "notices_off_already": "",
        "notices_on_done": "",
        "notices_on_already": "",
        "outreach_text": "kind title body",
        "outreach_link": "link",
        "outreach_form": "id",
        "outreach_form_button": "",
        "outreach_footer": "",
        "workorder_none": "",
        "workorder_start": "title",
        "workorder_need_unclear": "",
        "workorder_no_need": "",
        "workorder_contact": "",
        "workorder_contact_invalid": "",
        "workorder_done": "count lines contact_days",
        "workorder_done_line": "number department title",
        "handoff_waiting": "department",
        "handoff_no_one": "contact_days",
        "handoff_joined": "name department",
        "handoff_ended": "",
        "handoff_user_ended": "",
        "button_expired": "",
        "handoff_timeout": "number contact_due",
        "handoff_cancelled": "",
        "result_notice": "number result",
        "notice_link": "link",
        "notice_accepted": "number who done_due",
        "notice_progress": "number department note",
        "notice_reply": "number who text",
        "notice_overdue": "number department due expect",
        "notice_overdue_body": "department expect",
        "rate_satisfied": "",
        "rate_basic": "",
        "rate_unsatisfied": "",
        "rate_thanks": "",
        "rate_thanks_short": "",
        "rate_reopened": "number contact_due",
        "rate_closed_after_reopen": "number",
        "rate_comment_saved": "",
        "rate_nothing": "",
        "staff_new_ticket": "number enterprise description department reason contact_due done_due",
        "staff_handoff_offer": "who department question",
        "staff_handoff_taken": "who",
        "staff_handoff_taken_by_other": "name",
        "staff_handoff_closed": "",
        "staff_not_your_department": "department",
        "staff_relay": "who text",
        "staff_unknown": "name",
        "staff_linked": "name department role",
        "staff_link_failed": "reason",
        "intake_filed": "number source department contact_due done_due",
    }.items()
}


class Replies:
    """Validated reply templates; ``replies("key", name=value)`` renders one."""

    def __init__(self, templates: dict[str, str]) -> None:
        self._templates = templates

    def __call__(self, key: str, **values: object) -> str:
        return self._templates[key].format(**values)


def _fields(template: str) -> set[str]:
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.add(field.split(".")[0].split("[")[0])
    return names


def load_replies(path: Path | None = None) -> Replies:
    """Load and check ``config/replies.yaml`` (or *path*)."""
    p = path or config_dir() / "replies.yaml"
    src = str(p)
    docs = load_documents(p)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise ConfigError("expected one mapping of reply keys to texts", path=src)
    data, lines = docs[0].data, docs[0].lines
    templates: dict[str, str] = {}
    for key, value in data.items():
        line = lines.get((key,))
        if key not in PLACEHOLDERS:
            raise ConfigError("unknown reply key", path=src, line=line, key=str(key))
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("expected a non-empty text", path=src, line=line, key=key)
        try:
            used = _fields(value)
        except ValueError as exc:
            raise ConfigError(
                f"bad placeholder syntax: {exc}", path=src, line=line, key=key
            ) from None
        unknown = used - PLACEHOLDERS[key]
        if unknown:
            allowed = "、".join(sorted(PLACEHOLDERS[key])) or "（无）"
            raise ConfigError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}; this text may use: {allowed}",
                path=src,
                line=line,
                key=key,
            )
        templates[key] = value
    missing = sorted(set(PLACEHOLDERS) - set(templates))
    if missing:
        raise ConfigError(f"missing reply texts: {', '.join(missing)}", path=src)
    return Replies(templates)


# ----------------------------------------------------------------- canned replies (常用回复)


class CannedUse(StrEnum):
    """Which console text a canned reply may fill."""

    PROGRESS = "progress"  # 进度
    REPLY = "reply"  # 回复企业
    RESOLVE = "resolve"  # 办结 (the result)


class CannedReply(StrictModel):
    """One canned reply: a short title for the list and the text it fills in."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,40}$")]
    title: Annotated[str, StringConstraints(min_length=1, max_length=30)]
    use: tuple[CannedUse, ...] = Field(min_length=1)
    text: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class CannedReplies(StrictModel):
    """``config/canned_replies.yaml``: the console's canned replies, in file order."""

    replies: tuple[CannedReply, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> CannedReplies:
        seen: set[str] = set()
        for reply in self.replies:
            if reply.id in seen:
                raise ValueError(f"常用回复编号「{reply.id}」重复，每条常用回复的 id 必须唯一")
            seen.add(reply.id)
        return self

    def for_use(self, use: CannedUse | str) -> list[CannedReply]:
        """The replies offered for *use* (进度, 回复企业 or 办结)."""
        wanted = CannedUse(use)
        return [r for r in self.replies if wanted in r.use]


def load_canned_replies(path: Path | None = None) -> CannedReplies:
    """Load and check ``config/canned_replies.yaml`` (or *path*); a missing file means none.

    A bad file raises ``ConfigError`` naming the file, line and key.
    """
    p = path or config_dir() / "canned_replies.yaml"
    if not p.exists():
        return CannedReplies()
    return load_model(p, CannedReplies)
