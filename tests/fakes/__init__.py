"""Fakes of external APIs, run as real HTTP servers on 127.0.0.1 that record what they get.

``telegram_api.FakeTelegramAPI`` (Bot API) and ``wechat_api.FakeWeChatApi`` (WeChat); each is
imported on first use, so one fake's imports never break the other's tests.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FakeTelegramAPI", "FakeWeChatApi"]

_HOMES = {"FakeTelegramAPI": "tests.fakes.telegram_api", "FakeWeChatApi": "tests.fakes.wechat_api"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
