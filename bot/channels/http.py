"""HTTP pieces the wechatpy-based channels share (the Official Account and WeCom)."""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["TimeoutSession", "cgi_bin"]


class TimeoutSession(requests.Session):
    """A requests session with a default timeout (wechatpy's token fetch passes none)."""

    def __init__(self, timeout: float | tuple[float, float]) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def cgi_bin(api_base: str) -> str:
    """wechatpy's ``API_BASE_URL`` for *api_base*: ``…/cgi-bin/`` added when missing."""
    base = api_base.rstrip("/")
    if not base.endswith("/cgi-bin"):
        base += "/cgi-bin"
    return base + "/"
