"""The Telegram channel: python-telegram-bot 22 in front of the dialogue engine.

The adapter only translates. An ``Update`` (from ``POST /telegram/webhook`` — secret header
checked first — or from long polling) becomes an :class:`~bot.types.Incoming`; the dialogue
runs in a thread; its :class:`~bot.types.Reply` values go back as HTML messages (escaped
text, numbered choices, inline keyboards, split under 4,096 characters at sentence ends).
Pushes from the outbox go out through :class:`TelegramSender` on the same ``Bot``.

Nothing is answered twice and nothing is lost: each reply is first written to the outbox
under a key of its update — only the handler whose write went in sends it, directly when
the chat has no waiting pushes (the row leased meanwhile, then marked sent or left for the
worker's retry), so the same update handled twice at once is still answered once. An update
is recorded as done only after its replies were sent or queued; a redelivered update that
was done is only acknowledged, and in polling mode an update whose handling failed is put
back on the queue a few times (Telegram will not deliver it again). A message split in
parts records the parts already sent (``parts_sent``), so a retry sends only the rest.
``/start CODE`` and ``/link CODE`` redeem a commissioner invite (:mod:`handoff.invites`).

Start-up may fail (Telegram unreachable, the token refused): it undoes what it did and
raises ``ChannelUnavailable``, the server tries again with backoff, and until then the
webhook answers 503 and pushes wait in the outbox (``RetryLater``). An update PTB cannot
read (junk, a wrong shape, a ``message`` without ``chat``) is acknowledged with one log line
(:func:`update_problem` finds what is missing), never answered with an error Telegram would
redeliver forever.

PTB's own retries stay out of the way: no rate limiter (``AIORateLimiter`` would retry
429s itself), explicit request timeouts, and every failed send is retried by the outbox
worker with backoff or Telegram's ``retry_after``.

Modules: :mod:`.settings` (settings from the environment), :mod:`.rendering` (replies as
HTML and keyboards), :mod:`.inbound` (reading messages), :mod:`.sender` (sending, error
mapping) and :mod:`.adapter` (webhook, polling, delivery once per update).
"""

from bot.channels.telegram.adapter import SECRET_HEADER, TelegramAdapter, telegram_adapter_from_env
from bot.channels.telegram.inbound import invite_code, update_problem
from bot.channels.telegram.rendering import (
    MAX_CALLBACK_DATA,
    MAX_MESSAGE_CHARS,
    Part,
    keyboard_rows,
    render,
    split_text,
    to_html,
)
from bot.channels.telegram.sender import TelegramSender
from bot.channels.telegram.settings import DEFAULT_API_BASE, TelegramSettings

__all__ = [
    "DEFAULT_API_BASE",
    "MAX_CALLBACK_DATA",
    "MAX_MESSAGE_CHARS",
    "SECRET_HEADER",
    "Part",
    "TelegramAdapter",
    "TelegramSender",
    "TelegramSettings",
    "invite_code",
    "keyboard_rows",
    "render",
    "split_text",
    "telegram_adapter_from_env",
    "to_html",
    "update_problem",
]
