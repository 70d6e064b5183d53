"""Replies as Telegram messages: escaped HTML with links, numbered choices and inline keyboards.

:func:`render` turns a :class:`~bot.types.Reply` into :class:`Part` values — HTML text
(:func:`to_html`) split under 4,096 UTF-16 units at sentence ends (:func:`split_text`), the
keyboard (:func:`keyboard_rows`) on the last part.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.types import Button, Reply

__all__ = [
    "MAX_CALLBACK_DATA",
    "MAX_MESSAGE_CHARS",
    "Part",
    "keyboard_rows",
    "render",
    "split_text",
    "to_html",
]

log = logging.getLogger("yxby.telegram")

MAX_MESSAGE_CHARS = 4096
MAX_CALLBACK_DATA = 64

_HEADER = re.compile(r"【[^【】\n]{1,30}】")
_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


# a web address, up to the first space, CJK punctuation or closing bracket; trailing ASCII
# punctuation (a full stop, a comma) is not part of it
_URL = re.compile(r"https?://[^\s<>\"'，。；：！？、）】》]+")
_URL_TAIL = ".,;:!?)]}'\""


def _plain_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    return _HEADER.sub(lambda m: f"<b>{m.group(0)}</b>", escaped)


def to_html(text: str) -> str:
    """*text* escaped for Telegram's HTML mode: 【headings】 in bold, web addresses as links."""
    parts: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TAIL)
        if "://" not in url or url.endswith("://"):
            continue
        start, end = match.start(), match.start() + len(url)
        parts.append(_plain_html(text[pos:start]))
        href = html.escape(url, quote=True)
        parts.append(f'<a href="{href}">{html.escape(url, quote=False)}</a>')
        pos = end
    parts.append(_plain_html(text[pos:]))
    return "".join(parts)


def _length(text: str) -> int:
    # Telegram counts UTF-16 code units
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """*text* in pieces whose HTML fits *limit*, cut after sentence ends (。！？ or a newline).

    A single sentence longer than the limit is cut where it must.
    """
    if _length(to_html(text)) <= limit:
        return [text] if text.strip() else []
    chunks: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        if _length(to_html(current + piece)) <= limit:
            current += piece
            continue
        if current:
            chunks.append(current)
        while _length(to_html(piece)) > limit:
            low, high = 1, len(piece)
            while low < high:  # the longest prefix that fits
                mid = (low + high + 1) // 2
                if _length(to_html(piece[:mid])) <= limit:
                    low = mid
                else:
                    high = mid - 1
            chunks.append(piece[:low])
            piece = piece[low:]
        current = piece
    if current:
        chunks.append(current)
    return [c.strip("\n") for c in chunks if c.strip()]


def keyboard_rows(reply: Reply) -> list[list[Button]]:
    """The inline keyboard of *reply*: its buttons, or one per numbered choice.

    Short labels share a row; a payload longer than Telegram's 64-byte ``callback_data`` is
    left out (the engine's payloads are short; the choice can still be typed).
    """
    buttons = reply.buttons or tuple(
        Button(str(i), f"cmd:{i}") for i in range(1, len(reply.choices) + 1)
    )
    rows: list[list[Button]] = []
    width = 0
    for button in buttons:
        size = len(button.payload.encode("utf-8"))
        if not 0 < size <= MAX_CALLBACK_DATA:
            log.warning("button %r left out: callback data of %d bytes", button.label, size)
            continue
        if rows and len(rows[-1]) < 5 and width + len(button.label) <= 12:
            rows[-1].append(button)
            width += len(button.label)
        else:
            rows.append([button])
            width = len(button.label)
    return rows


@dataclass(frozen=True)
class Part:
    """One Telegram message of a reply: HTML text and, on the last part, the keyboard."""

    html: str
    rows: tuple[tuple[Button, ...], ...] = ()

    def markup(self) -> InlineKeyboardMarkup | None:
        """The PTB keyboard, if any."""
        if not self.rows:
            return None
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
                for row in self.rows
            ]
        )


def render(reply: Reply) -> list[Part]:
    """*reply* as Telegram messages (none when it has nothing to show)."""
    lines = [reply.text, *(f"{i}. {c}" for i, c in enumerate(reply.choices, 1))]
    text = "\n".join(line for line in lines if line)
    pieces = split_text(text)
    rows = tuple(tuple(row) for row in keyboard_rows(reply))
    if not pieces:
        return [Part(to_html("请选择："), rows)] if rows else []
    parts = [Part(to_html(p)) for p in pieces]
    parts[-1] = Part(parts[-1].html, rows)
    return parts
