"""The one internal message type in each direction.

Channel adapters turn a Telegram ``Update``, a WeChat XML message or a terminal line into an
:class:`Incoming`; the dialogue engine answers with :class:`Reply` values that adapters
render natively (numbered choices as text or keyboards, buttons as inline keyboards or
quick replies). Nothing here imports a channel library.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "Button",
    "Channel",
    "Engine",
    "Incoming",
    "MessageKind",
    "Reply",
    "reply_from_payload",
    "reply_payload",
]


class Channel(enum.StrEnum):
    """Where a message came from (and where a push goes)."""

    TERMINAL = "terminal"
    TELEGRAM = "telegram"
    WECHAT = "wechat"
    WECOM = "wecom"  # 企业微信: notices to staff only
    CONSOLE = "console"


class MessageKind(enum.StrEnum):
    """What the user sent."""

    TEXT = "text"
    BUTTON = "button"  # a tapped quick-reply / inline button: ``payload`` carries its value
    VOICE = "voice"  # ``text`` holds the recognised speech, empty when there was none
    IMAGE = "image"
    FILE = "file"
    LOCATION = "location"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    MENU = "menu"  # a custom-menu click: ``payload`` carries the key


@dataclass(frozen=True)
class Incoming:
    """One message from a user of any channel, already verified and decoded."""

    channel: str
    user_key: str
    text: str = ""
    kind: MessageKind = MessageKind.TEXT
    msg_id: str | None = None
    payload: str | None = None
    display_name: str | None = None
    reply_to: str | None = None  # id of the message this one answers (commissioner relay)
    at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Button:
    """A quick-reply button: ``label`` is shown, ``payload`` comes back when tapped."""

    label: str
    payload: str


@dataclass(frozen=True)
class Reply:
    """One message to the user.

    ``choices`` are numbered options (the user may answer with the number); ``buttons`` are
    quick replies. ``html`` marks text that already carries safe HTML markup (Telegram);
    other channels get ``text``.
    """

    text: str
    choices: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    ref: str | None = None  # what this reply is about (e.g. a relayed conversation key)

    def render_plain(self) -> str:
        """Text with the numbered choices written out (terminal, WeChat)."""
        lines = [self.text]
        lines += [f"{i}. {c}" for i, c in enumerate(self.choices, 1)]
        if self.buttons:
            lines.append("（回复：" + " / ".join(b.label for b in self.buttons) + "）")
        return "\n".join(line for line in lines if line)


class Engine(Protocol):
    """What a channel adapter needs from the dialogue: one call per incoming message."""

    def handle(self, message: Incoming) -> Sequence[Reply]: ...


def reply_payload(reply: Reply) -> dict[str, Any]:
    """The stored form of a reply (outbox payloads, replies kept for redeliveries)."""
    return {
        "text": reply.text,
        "choices": list(reply.choices),
        "buttons": [{"label": b.label, "payload": b.payload} for b in reply.buttons],
        "ref": reply.ref,
    }


def reply_from_payload(payload: dict[str, Any]) -> Reply:
    """The :class:`Reply` a stored payload describes (the inverse of :func:`reply_payload`)."""
    return Reply(
        text=str(payload.get("text", "")),
        choices=tuple(payload.get("choices") or ()),
        buttons=tuple(Button(b["label"], b["payload"]) for b in payload.get("buttons") or ()),
        ref=payload.get("ref"),
    )
