"""Keep secrets and personal data out of the logs, at every level (debug included).

Two layers:

* **At the source.** Our own log lines never print a chat user's key: they print
  :func:`tag` of it, a short stable pseudonym (the same user gives the same tag, so a log can
  still be followed). Libraries that print request bodies or SQL parameters at debug level
  (``sqlalchemy.engine``, ``httpx``, ``httpcore``, ``urllib3``, ``telegram``, ``hpack``) are
  held at ``WARNING`` by :func:`configure`, whatever ``--log-level`` says.
* **On every handler.** :class:`RedactingFilter` rewrites each record before it is written:
  the values of configured secrets (every ``YXBY_*`` variable whose name says SECRET, TOKEN,
  PASSWORD, KEY or AES), URL and JSON parameters that carry credentials or identities
  (``secret=``, ``access_token``, ``openid=``, ``signature=`` …), Telegram bot tokens,
  WeChat openids, mainland mobile and landline numbers and 居民身份证 numbers — also inside
  tracebacks. uvicorn's access log goes through it as well (its query strings carry
  ``openid``).

:func:`configure` installs all of this for ``yxby serve``; :func:`uvicorn_log_config` gives
uvicorn the same filter on its own handlers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "QUIET_LIBRARIES",
    "RedactingFilter",
    "configure",
    "redact",
    "secrets_from_env",
    "tag",
    "uvicorn_log_config",
]

MASK = "***"

QUIET_LIBRARIES = ("sqlalchemy", "httpx", "httpcore", "urllib3", "telegram", "hpack")
"""Loggers that print URLs, bodies or SQL parameters below WARNING."""

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|KEY|AES", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values would mask ordinary words

_PARAM_NAMES = (
    "secret|appsecret|app_secret|corpsecret|access_token|refresh_token|token|password|"
    "openid|unionid|signature|msg_signature|encodingaeskey|code|ticket"
)
_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    # ?secret=…&openid=… in URLs and access-log lines
    (re.compile(rf"(?i)([?&;\s](?:{_PARAM_NAMES})=)[^&\s\"'#]+"), rf"\g<1>{MASK}"),
    # "access_token": "…" in JSON or Python reprs
    (
        re.compile(rf"(?i)([\"'](?:{_PARAM_NAMES})[\"']\s*:\s*[\"'])[^\"']*([\"'])"),
        rf"\g<1>{MASK}\g<2>",
    ),
    # Authorization / Cookie headers
    (
        re.compile(r"(?i)\b(authorization|cookie|set-cookie)(\"?\s*[:=]\s*)[^\r\n,}]+"),
        rf"\g<1>\g<2>{MASK}",
    ),
    # Telegram bot tokens, in a URL path (/bot123:ABC…/sendMessage) or alone
    (re.compile(r"\b(bot)?\d{5,12}:[A-Za-z0-9_-]{30,}"), lambda m: f"{m.group(1) or ''}{MASK}"),
    # WeChat openids (28 characters, starting with o)
    (
        re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])"),
        lambda m: tag(m.group(0)),
    ),
    # 居民身份证号码
    (
        re.compile(
            r"(?<![0-9A-Za-z])\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{5}[\dXx](?![0-9A-Za-z])"
        ),
        lambda m: m.group(0)[:3] + "*" * 11 + m.group(0)[-4:],
    ),
    # mainland mobile numbers (optionally +86)
    (re.compile(r"(?<!\d)((?:\+?86[- ]?)?1[3-9]\d)(\d{4})(\d{4})(?!\d)"), r"\g<1>****\g<3>"),
    # landlines such as 010-12345678 or 0571-1234567
    (re.compile(r"(?<!\d)(0\d{2,3}-)(\d{3,4})(\d{4})(?!\d)"), r"\g<1>****\g<3>"),
)


def tag(value: str) -> str:
    """A short stable pseudonym for a user key: ``user#3f2a9c`` (never the key itself)."""
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:6]
    return f"user#{digest}"


def secrets_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of ``YXBY_*`` variables whose names mark them as secrets."""
    source = os.environ if env is None else env
    return [
        value
        for name, value in source.items()
        if name.startswith("YXBY_") and _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET
    ]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every secret value and every rule's match masked."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets and personal data in every record a handler writes (never drops one)."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = tuple(secrets_from_env() if secrets is None else secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.name == "uvicorn.access":
            # its formatter reads the arguments (client, method, path, …): mask each
            record.args = tuple(
                redact(a, self.secrets) if isinstance(a, str) else a for a in record.args
            )
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep what there is, masked
                message = f"{record.msg} {record.args}"
            record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, *, secrets: Iterable[str] | None = None) -> RedactingFilter:
    """Log to stderr at *level* through one redacting handler; quiet the noisy libraries."""
    root = logging.getLogger()
    found = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(found)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    floor = max(logging.WARNING, logging.getLevelName(level.upper()))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
    return found


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`RedactingFilter` on its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "filters": {"redact": {"()": "yxby.redact.RedactingFilter"}},
        "handlers": {
            name: {**handler, "filters": ["redact"]}
            for name, handler in LOGGING_CONFIG["handlers"].items()
        },
        "loggers": {
            name: {**logger, "level": level.upper()}
            for name, logger in LOGGING_CONFIG["loggers"].items()
        },
    }
    return config
