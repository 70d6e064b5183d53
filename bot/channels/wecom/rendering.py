"""Outbox payloads as WeCom application messages: a text card for a ticket, text otherwise.

Pure functions, no I/O. A payload about a ticket (``ref`` ``ticket:<number>``, or the SLA
notices' ``ticket`` field) becomes a ``textcard``: the first line is the title, the rest
the description, and the card opens ``{console}/console/tickets/<number>``. Anything else
is a ``text`` message; one about a live handoff (``ref`` ``handoff:<id>``) ends with a link to
the console's queue, where waiting requests are taken. Chat buttons (签收, 接入 …) are not
rendered: WeCom messages are answered in the console, not by replying.

WeCom cuts a card's title after 128 bytes and its description after 512, and refuses text
over 2,048 bytes. Texts are cut here instead, at a character, with "…": the longest line
gives way first, so short lines such as deadlines stay whole.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bot.types import reply_from_payload

__all__ = [
    "CARD_BUTTON",
    "DESCRIPTION_LIMIT_BYTES",
    "TEXT_LIMIT_BYTES",
    "TITLE_LIMIT_BYTES",
    "TextCard",
    "TextMessage",
    "fit_lines",
    "render",
    "ticket_of",
]

TITLE_LIMIT_BYTES = 128
DESCRIPTION_LIMIT_BYTES = 512
TEXT_LIMIT_BYTES = 2048
CARD_BUTTON = "查看"
ELLIPSIS = "…"
NO_DETAILS = "请在控制台查看详情。"
MIN_LINE_CHARS = 12
"""A line cut shorter than this says too little: lines are dropped from the end instead."""


@dataclass(frozen=True)
class TextCard:
    """A ``textcard`` message (``description`` is WeCom's small HTML: ``<br>`` breaks lines)."""

    title: str
    description: str
    url: str
    btntxt: str = CARD_BUTTON


@dataclass(frozen=True)
class TextMessage:
    """A ``text`` message."""

    content: str


def ticket_of(payload: dict[str, Any]) -> str | None:
    """The ticket number a payload is about, if any."""
    ref = payload.get("ref")
    if isinstance(ref, str) and ref.startswith("ticket:") and ref[len("ticket:") :].strip():
        return ref[len("ticket:") :].strip()
    number = payload.get("ticket")
    if isinstance(number, str) and number.strip():
        return number.strip()
    return None


def render(payload: dict[str, Any], console_url: str) -> TextCard | TextMessage:
    """The WeCom message for an outbox *payload*; links start with *console_url*."""
    reply = reply_from_payload(payload)
    lines = reply.text.strip().splitlines() or [""]
    lines += [f"{i}. {choice}" for i, choice in enumerate(reply.choices, 1)]
    number = ticket_of(payload)
    if number is not None:
        title = fit_lines(lines[:1], TITLE_LIMIT_BYTES)
        rest = [line for line in lines[1:] if line.strip()] or [NO_DETAILS]
        description = fit_lines(rest, DESCRIPTION_LIMIT_BYTES, escape=_escape, sep="<br>")
        url = f"{console_url}/console/tickets/{quote(number, safe='')}"
        return TextCard(title or number, description, url)
    link = ""
    if isinstance(reply.ref, str) and reply.ref.startswith("handoff:"):
        link = f"在控制台接入：{console_url}/console/"
    if not link:
        return TextMessage(fit_lines(lines, TEXT_LIMIT_BYTES))
    room = TEXT_LIMIT_BYTES - _size("\n\n" + link)
    return TextMessage(fit_lines(lines, room) + "\n\n" + link)


def _shortenable(lines: Sequence[str], i: int) -> bool:
    return len(lines[i]) > MIN_LINE_CHARS or (len(lines) == 1 and bool(lines[i]))


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_lines(
    lines: Sequence[str],
    limit: int,
    *,
    escape: Callable[[str], str] = str,
    sep: str = "\n",
) -> str:
    """*lines* joined by *sep* in at most *limit* UTF-8 bytes once each is *escape*-d.

    While too long, the longest line loses characters from its end (and ends with "…"); a
    line is not cut below :data:`MIN_LINE_CHARS` unless it is the only one, and once only
    such short lines are left the last lines go. Never splits a character, an HTML entity
    or the separator.
    """
    kept = [line.strip() for line in lines]
    cut = [False] * len(kept)

    def shown(i: int) -> str:
        return escape(kept[i]) + (ELLIPSIS if cut[i] else "")

    def total() -> int:
        return _size(sep.join(shown(i) for i in range(len(kept))))

    while kept and (excess := total() - limit) > 0:
        sizes = sorted(
            ((_size(shown(i)), -i) for i in range(len(kept)) if _shortenable(kept, i)),
            reverse=True,
        )
        if not sizes:  # only short lines left: the last ones go, the one before says so
            kept.pop()
            cut.pop()
            if kept:
                cut[-1] = True
            continue
        longest = -sizes[0][1]
        # a character is at most 5 bytes once escaped ("&amp;"): removing this many never
        # cuts more than needed, nor below the next longest line
        lead = sizes[0][0] - sizes[1][0] if len(sizes) > 1 else excess
        step = max(1, min(excess, lead) // 5)
        kept[longest] = kept[longest][:-step].rstrip()
        cut[longest] = True
    return sep.join(shown(i) for i in range(len(kept)))
