"""Passive replies: fitting an answer into WeChat's 2,048 bytes, and the "全文" rest.

:func:`fit_passive` cuts a long answer (ending it with :data:`MORE_PROMPT`); the rest is
kept per user by :class:`_Continuations` until the user replies "全文". Also the rendering
of replies as plain text and the CDATA-safe form of a text for wechatpy's XML.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bot.types import Reply
from handoff.shared_state import SharedState

__all__ = ["FULL_TEXT_COMMAND", "MORE_PROMPT", "PASSIVE_LIMIT_BYTES", "fit_passive"]

PASSIVE_LIMIT_BYTES = 2048
"""What a text message may hold (UTF-8 bytes of ``Content``)."""
FULL_TEXT_COMMAND = "全文"
MORE_PROMPT = "……\n回复“全文”查看完整内容"

_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def fit_passive(text: str, limit: int = PASSIVE_LIMIT_BYTES) -> tuple[str, str]:
    """*text* cut to *limit* UTF-8 bytes, and the rest ("" when all of it fits).

    A cut text ends with :data:`MORE_PROMPT`; the cut falls on a line break when one is in
    the second half of what fits.
    """
    if len(text.encode()) <= limit:
        return text, ""
    room = limit - len(MORE_PROMPT.encode()) - 1
    used = cut = 0
    for i, char in enumerate(text):
        used += len(char.encode())
        if used > room:
            break
        cut = i + 1
    newline = text.rfind("\n", 0, cut)
    if newline >= cut // 2:
        cut = newline
    return text[:cut].rstrip() + "\n" + MORE_PROMPT, text[cut:].lstrip()


def _render(replies: Sequence[Reply]) -> str:
    return "\n\n".join(p for p in (r.render_plain() for r in replies) if p)


class _Continuations:
    """The unsent rest of long answers, per user, until "全文" or the TTL.

    With *shared* (``App.shared``) the rests live there, so a "全文" reaching any server
    process gets the rest; without it, in this process's memory.
    """

    def __init__(
        self,
        ttl: timedelta,
        clock: Callable[[], datetime],
        limit: int = 10_000,
        *,
        shared: SharedState | None = None,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self.shared = shared
        self._rest: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(user: str) -> str:
        """The shared-state key of *user*'s rest."""
        return f"wechat:rest:{user}"

    def put(self, user: str, rest: str) -> None:
        if self.shared is not None:
            if rest:
                self.shared.set(self.key(user), rest, self.ttl.total_seconds())
            else:
                self.shared.delete(self.key(user))
            return
        with self._lock:
            self._rest.pop(user, None)
            if rest:
                self._rest[user] = (rest, self.clock())
                while len(self._rest) > self.limit:
                    self._rest.popitem(last=False)

    def take(self, user: str) -> str | None:
        if self.shared is not None:
            return self.shared.take(self.key(user))
        with self._lock:
            item = self._rest.pop(user, None)
        if item is None or self.clock() - item[1] > self.ttl:
            return None
        return item[0]


def _cdata_safe(text: str) -> str:
    """*text* for wechatpy's CDATA sections: no characters XML forbids, ``]]>`` split."""
    return _NOT_XML_CHARS.sub("", text).replace("]]>", "]]]]><![CDATA[>")
