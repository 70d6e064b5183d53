"""Ticket events worded for staff: one description for the console and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handoff.calendar import SHANGHAI
from handoff.models import TicketSource
from handoff.tickets import Action, EventView

__all__ = ["EventRow", "describe_event"]


@dataclass(frozen=True)
class EventRow:
    """One event of the timeline, worded for staff."""

    at: datetime
    actor: str
    kind: str
    title: str
    change: str
    """``待签收 → 已签收`` when the state changed, else empty."""
    detail: str
    internal: bool
    """Staff only (an internal note, a helper's part …): never shown to the enterprise."""


def _names(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    return str(value or "")


def _when(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def describe_event(event: EventView) -> EventRow:
    """The event *event* as a line of the console's timeline (every kind, in Chinese)."""
    data: Mapping[str, Any] = event.data
    reason = event.reason or ""
    kind = event.kind
    try:
        title = Action(kind).label
    except ValueError:
        title = kind
    parts: list[str] = []
    if kind == "create":
        parts.append(f"承办部门：{data.get('department', '')}")
        if data.get("source"):
            try:
                source = TicketSource(str(data["source"])).label
            except ValueError:
                source = str(data["source"])
            parts.append(f"来源：{source}")
        if reason:
            parts.append(f"分派理由：{reason}")
    elif kind == "accept":
        if data.get("commissioner"):
            parts.append(f"承办专员：{data['commissioner']}")
    elif kind == "transfer":
        parts.append(f"{data.get('from_department', '')} → {data.get('to_department', '')}")
        if reason:
            parts.append(f"理由：{reason}")
    elif kind == "assist":
        parts.append(f"邀请协办：{_names(data.get('departments'))}")
        if reason:
            parts.append(f"理由：{reason}")
    elif kind == "acknowledge":
        parts.append(f"{data.get('department', '')}确认协办")
        if data.get("opinion"):
            parts.append(f"协办意见：{data['opinion']}")
    elif kind == "escalate":
        if data.get("lead_department"):  # events before the agenda: the decision in one step
            parts.append(f"牵头部门：{data.get('lead_department', '')}")
            parts.append(f"完成时限：{_when(data.get('deadline'))}")
        elif data.get("meeting"):
            parts.append(f"列入议程：{data['meeting']}")
        else:
            parts.append("列入下一次联席会议议程")
        if reason:
            parts.append(f"理由：{reason}")
    elif kind == "decide":
        parts.append(f"牵头部门：{data.get('lead_department', '')}")
        if data.get("helpers"):
            parts.append(f"协办部门：{_names(data.get('helpers'))}")
        parts.append(f"完成时限：{_when(data.get('deadline'))}")
        if reason:
            parts.append(f"会议决定：{reason}")
    elif kind == "opinion":
        parts.append(f"{data.get('department', '')}意见：{reason}")
    elif kind == "callback":
        if data.get("reached"):
            parts.append(f"对答复：{data.get('reply_satisfaction', '')}")
            parts.append(f"对办理结果：{data.get('result_satisfaction', '')}")
        else:
            parts.append("未接通")
        if reason:
            parts.append(f"记录：{reason}")
    elif kind == "urge" and data.get("level"):
        from handoff.models import UrgeLevel

        parts.append(UrgeLevel(str(data["level"])).label)
        if reason:
            parts.append(reason)
    elif kind == "resolve":
        parts.append(f"办理结果：{data.get('result', '')}")
    elif kind == "assign":
        before = data.get("from_commissioner") or "未指定"
        parts.append(f"{before} → {data.get('to_commissioner', '')}")
        if reason:
            parts.append(f"说明：{reason}")
    elif kind == "record_survey":
        parts.append(f"评价：{data.get('result', '')}")
        if data.get("comment"):
            parts.append(f"意见：{data['comment']}")
    elif kind == "reopen":
        parts.append(f"第 {data.get('round', '')} 次重办")
        if reason:
            parts.append(reason)
    elif reason:
        parts.append(reason)
    if data.get("assigned") and kind != "accept":
        parts.append(f"承办专员：{data['assigned']}")
    change = ""
    if event.to_state is not None and event.from_state is not event.to_state:
        before = event.from_state.label if event.from_state is not None else "—"
        change = f"{before} → {event.to_state.label}"
    internal = kind in (
        "note", "assist", "acknowledge", "assign", "urge", "start", "opinion", "callback"
    )  # fmt: skip
    return EventRow(event.at, event.actor, kind, title, change, "；".join(parts), internal)
