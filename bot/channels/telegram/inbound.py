"""Reading Telegram messages: invite commands, tapped buttons' labels, message kinds.

Pure helpers the adapter uses to turn an ``Update`` into an :class:`~bot.types.Incoming`:
:func:`invite_code` recognises ``/start CODE`` and ``/link CODE``; the others find the label
of a tapped button and the kind and text of a message (a ``/command@bot`` loses its suffix).
"""

from __future__ import annotations

import re

from telegram import Message

from bot.types import MessageKind

__all__ = ["invite_code"]

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
