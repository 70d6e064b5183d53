"""Reading Telegram messages: invite commands, tapped buttons' labels, message kinds.

Pure helpers the adapter uses to turn an ``Update`` into an :class:`~bot.types.Incoming`:
:func:`invite_code` recognises ``/start CODE`` and ``/link CODE``; :func:`update_problem`
finds what a malformed update lacks; the others find the label of a tapped button and the
kind and text of a message (a ``/command@bot`` loses its suffix).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

from telegram import Message, TelegramObject, Update

from bot.types import MessageKind

__all__ = ["invite_code", "update_problem"]

_LINK = re.compile(r"^/(start|link)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)
_BOT_SUFFIX = re.compile(r"^(/\w+)@\w+")


def invite_code(text: str) -> str | None:
    """The invite code of ``/start CODE`` or ``/link CODE`` (``""`` for a bare ``/link``)."""
    m = _LINK.match(text.strip())
    if m is None:
        return None
    command, argument = m.group(1), (m.group(2) or "").strip()
    if command == "link":
        return argument
    return argument or None


def update_problem(update: Update) -> str | None:
    """What *update* lacks that Telegram always sends (``"message.chat missing"``), or ``None``.

    python-telegram-bot builds objects from whatever JSON it gets and leaves absent fields
    ``None`` — a ``message`` without ``chat`` parses, then breaks every handler that looks at
    it. A field is required when the PTB class's constructor requires it (they follow the
    Bot API's required fields); the whole object tree is checked.
    """
    return _missing(update, "update")


def _missing(obj: TelegramObject, path: str) -> str | None:
    required, fields = _shape(type(obj))
    for name in required:
        if getattr(obj, name, None) is None:
            return f"{path}.{name.lstrip('_')} missing"
    for name in fields:
        for where, item in _objects(getattr(obj, name, None), f"{path}.{name}"):
            problem = _missing(item, where)
            if problem is not None:
                return problem
    return None


def _objects(value: object, path: str) -> Iterator[tuple[str, TelegramObject]]:
    """The Telegram objects in *value* (keyboards are tuples of rows), with their paths."""
    if isinstance(value, TelegramObject):
        yield path, value
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _objects(item, f"{path}[{i}]")


_SHAPES: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _shape(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where *cls* keeps its required constructor arguments (``duration`` in ``_duration``),
    and its public fields."""
    if cls not in _SHAPES:
        slots = {n for c in cls.__mro__ for n in getattr(c, "__slots__", ())}
        required: list[str] = []
        for p in inspect.signature(cls).parameters.values():
            if p.default is not inspect.Parameter.empty:
                continue
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                continue
            if p.name in slots:
                required.append(p.name)
            elif f"_{p.name}" in slots:
                required.append(f"_{p.name}")
        fields = sorted(n for n in slots if not n.startswith("_"))
        _SHAPES[cls] = (tuple(required), tuple(fields))
    return _SHAPES[cls]


def _label_of(message: Message, data: str) -> str | None:
    markup = message.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


def _kind_and_text(message: Message) -> tuple[MessageKind, str] | None:
    if message.text is not None:
        return MessageKind.TEXT, _BOT_SUFFIX.sub(r"\1", message.text)
    if message.contact is not None:  # a shared contact card answers "your phone number?"
        return MessageKind.TEXT, message.contact.phone_number
    caption = message.caption or ""
    if message.voice is not None or message.video_note is not None:
        return MessageKind.VOICE, ""
    if message.photo or message.sticker is not None:
        return MessageKind.IMAGE, caption
    if any(
        x is not None for x in (message.document, message.video, message.audio, message.animation)
    ):
        return MessageKind.FILE, caption
    if message.location is not None or message.venue is not None:
        return MessageKind.LOCATION, ""
    return None
