"""The WeCom channel as a :class:`bot.server.ChannelAdapter`: pushes only, no routes.

Staff read WeCom notices and act in the console, so there is no callback to serve; the
adapter holds the API client and the sender the outbox worker uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from starlette.routing import BaseRoute

from bot.channels.wecom.client import WeComApiClient
from bot.channels.wecom.config import CHANNEL, WeComConfig, wecom_config_from_env
from bot.channels.wecom.sender import WeComSender
from handoff.shared_state import SharedState

__all__ = ["WeComAdapter", "wecom_adapter_from_env"]


def wecom_adapter_from_env(
    env: Mapping[str, str], shared: SharedState | None = None
) -> WeComAdapter:
    """The WeCom adapter configured from ``YXBY_WECOM_*`` and ``YXBY_CONSOLE_URL`` in *env*;
    with *shared* (``App.shared``) its access token is kept there for every process."""
    return WeComAdapter(wecom_config_from_env(env), shared=shared)


class WeComAdapter:
    """企业微信 application messages to staff (a :class:`bot.server.ChannelAdapter`)."""

    name = CHANNEL

    def __init__(
        self,
        config: WeComConfig,
        *,
        client: WeComApiClient | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.config = config
        self.client = client or WeComApiClient(
            config.corp_id,
            config.secret,
            api_base=config.api_base,
            timeout=config.http_timeout,
            shared=shared,
        )
        self._sender = WeComSender(self.client, config)

    def routes(self) -> Sequence[BaseRoute]:
        """None: WeCom messages are answered in the console."""
        return []

    def sender(self) -> WeComSender:
        """Application messages for the outbox worker."""
        return self._sender

    async def startup(self) -> None:
        """Nothing to start: the access token is fetched on the first push."""

    async def shutdown(self) -> None:
        """Close the API client's connections."""
        await asyncio.to_thread(self.client.close)
