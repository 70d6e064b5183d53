"""Signed, expiring links to one ticket for one enterprise user: no login, nothing guessable.

A link carries the ticket number, the channel identity it was made for and its expiry,
signed with HMAC-SHA256 under a server secret (``YXBY_LINK_SECRET``). Whoever holds the link
may see that ticket and rate it — exactly what the chat it was sent to may do — and nothing
else; a changed character, another ticket or an expired link is refused.

Without ``YXBY_LINK_SECRET`` a random secret is made once and kept in the data directory
(mode 0600, never in the repository), so links survive restarts of a single server; a
deployment with several servers sets the variable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from yxby.errors import InputError

__all__ = ["LINK_SECRET_ENV", "PUBLIC_URL_ENV", "LinkTarget", "TicketLinks", "link_secret"]

LINK_SECRET_ENV = "YXBY_LINK_SECRET"
PUBLIC_URL_ENV = "YXBY_PUBLIC_URL"
DEFAULT_TTL = timedelta(days=30)
_SECRET_FILE = "link-secret"


def link_secret(env: Mapping[str, str], data_dir: Callable[[], Path]) -> bytes:
    """The signing secret: ``YXBY_LINK_SECRET``, else one kept in the data directory."""
    configured = (env.get(LINK_SECRET_ENV) or "").strip()
    if configured:
        if len(configured) < 16:
            raise InputError(f"{LINK_SECRET_ENV} 太短：至少 16 个字符")
        return configured.encode()
    path = data_dir() / _SECRET_FILE
    try:
        return path.read_bytes().strip() or _new_secret(path)
    except FileNotFoundError:
        return _new_secret(path)


def _new_secret(path: Path) -> bytes:
    """Create the secret file with a new value, or read the one another process made first.

    The value is written to a private temporary file and hard-linked into place, so the file
    appears complete or not at all: two workers starting at once end up with the same secret.
    """
    value = secrets.token_urlsafe(32).encode()
    fd, tmp = tempfile.mkstemp(prefix=".link-secret-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes().strip()
        return value
    finally:
        os.unlink(tmp)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkTarget:
    """What a verified link opens."""

    number: str
    identity_id: int
    expires_at: datetime


class TicketLinks:
    """Makes and checks ticket links (``{public_url}/t/{token}``)."""

    def __init__(
        self,
        secret: bytes,
        clock: Callable[[], datetime],
        *,
        public_url: str = "",
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return _b64(mac[:18])

    def token(self, number: str, identity_id: int) -> str:
        """A token for *number* as seen by channel identity *identity_id*."""
        expires = int((self._clock() + self.ttl).timestamp())
        body = f"{number.upper()}.{identity_id}.{expires}"
        return f"{_b64(body.encode())}.{self._sign(body)}"

    def url(self, number: str, identity_id: int) -> str:
        """The full link (relative when no public URL is configured)."""
        return f"{self.public_url}/t/{self.token(number, identity_id)}"

    def verify(self, token: str) -> LinkTarget:
        """The ticket and identity a token opens; ``InputError`` (Chinese) otherwise."""
        try:
            encoded, mac = token.split(".", 1)
            body = _unb64(encoded).decode()
            number, identity, expires = body.rsplit(".", 2)
            ok = hmac.compare_digest(mac, self._sign(body))
            moment = datetime.fromtimestamp(int(expires), UTC)
            identity_id = int(identity)
        except (ValueError, UnicodeDecodeError):
            raise InputError("链接无效：请使用消息中的完整链接") from None
        if not ok:
            raise InputError("链接无效：请使用消息中的完整链接")
        if moment <= self._clock():
            raise InputError("链接已过期：请在对话中回复诉求编号查询进度")
        return LinkTarget(number, identity_id, moment)
