"""User-facing texts from ``config/replies.yaml``, checked at start-up.

Every key the code uses must exist, and every ``{placeholder}`` of a template must be one the
code fills in; both are verified when the file is loaded, so a wording mistake stops start-up
with file, line and key instead of reaching a user.
"""

from __future__ import annotations

import string
from pathlib import Path

from yxby.errors import ConfigError
from yxby.paths import config_dir
from yxby.yamlconf import load_documents

__all__ = ["PLACEHOLDERS", "Replies", "load_replies"]

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
        "handoff_waiting": "department",
        "handoff_no_one": "contact_days",
        "handoff_joined": "name department",
        "handoff_ended": "",
        "handoff_user_ended": "",
        "button_expired": "",
        "handoff_timeout": "number contact_due",
        "handoff_cancelled": "",
        "result_notice": "number result",
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
