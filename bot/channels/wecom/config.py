"""WeCom channel configuration: :class:`WeComConfig`, read from ``YXBY_WECOM_*`` variables.

The application's Secret is read from the environment only; ``YXBY_CONSOLE_URL`` is where
staff open the console, the base of every link in a notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yxby.errors import ConfigError

__all__ = [
    "CHANNEL",
    "CONSOLE_URL_ENV",
    "DEFAULT_API_BASE",
    "WeComConfig",
    "wecom_config_from_env",
]

CHANNEL = "wecom"
"""The channel name of WeCom bindings (``CommissionerBinding.channel``) and outbox rows."""
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
CONSOLE_URL_ENV = "YXBY_CONSOLE_URL"
MAX_HTTP_TIMEOUT = 10.0
"""A push makes at most four HTTP calls (token, send, new token, send again): at this
timeout each, it still ends within the outbox worker's send timeout."""


@dataclass(frozen=True)
class WeComConfig:
    """Everything the WeCom channel needs; the secret comes from the environment."""

    corp_id: str
    agent_id: int
    secret: str = field(repr=False)
    console_url: str
    api_base: str = DEFAULT_API_BASE
    http_timeout: float = 5.0
    config_retry_seconds: float = 600.0
    """How long a push waits after WeCom refused the configuration (corpid, agentid, …)."""


def wecom_config_from_env(env: Mapping[str, str]) -> WeComConfig:
    """Read ``YXBY_WECOM_*`` and ``YXBY_CONSOLE_URL`` from *env*.

    Raises ``ConfigError`` naming the missing or invalid variable.
    """

    def required(name: str, hint: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError(f"未设置：{hint}", key=name)
        return value

    corp_id = required("YXBY_WECOM_CORPID", "填写企业微信管理后台「我的企业」页底部的企业ID")
    raw_agent = required("YXBY_WECOM_AGENTID", "填写自建应用详情页的 AgentId（整数）")
    try:
        agent_id = int(raw_agent)
    except ValueError:
        agent_id = 0
    if agent_id <= 0:
        raise ConfigError(
            f"应为正整数（应用的 AgentId），实际为 {raw_agent!r}", key="YXBY_WECOM_AGENTID"
        )
    secret = required("YXBY_WECOM_SECRET", "填写自建应用的 Secret（只从环境变量读取）")
    api_base = env.get("YXBY_WECOM_API_BASE", "").strip() or DEFAULT_API_BASE
    _check_url(api_base, "YXBY_WECOM_API_BASE")
    console = required(
        CONSOLE_URL_ENV,
        "填写专员打开控制台的地址，例如 https://yxby.example.gov.cn（通知里的链接以它开头）",
    )
    _check_url(console, CONSOLE_URL_ENV)
    timeout = 5.0
    raw_timeout = env.get("YXBY_WECOM_HTTP_TIMEOUT", "").strip()
    if raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= MAX_HTTP_TIMEOUT:
            raise ConfigError(
                f"应为 0 到 {MAX_HTTP_TIMEOUT:g} 之间的秒数，实际为 {raw_timeout!r}",
                key="YXBY_WECOM_HTTP_TIMEOUT",
            )
    return WeComConfig(
        corp_id=corp_id,
        agent_id=agent_id,
        secret=secret,
        console_url=console_base(console),
        api_base=api_base,
        http_timeout=timeout,
    )


def console_base(url: str) -> str:
    """*url* without a trailing ``/`` or ``/console`` (links add ``/console/…`` themselves)."""
    base = url.strip().rstrip("/")
    return base.removesuffix("/console")


def _check_url(url: str, key: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"应为 http:// 或 https:// 开头、不带参数的地址，实际为 {url!r}", key=key)
