"""The HTTP protocol every ``yxby serve`` process speaks: uvicorn's, with Nagle off.

asyncio turns Nagle's algorithm off only on sockets whose protocol number is TCP, and
uvicorn's own listening socket (``--workers`` > 1, or a socket handed over) is made with
protocol 0, so its connections keep Nagle on. A response is written in two pieces (the
headers, then the body): the body then waits for the client's delayed ACK, 40 ms on Linux,
on every request — the whole budget of a fast answer. Setting ``TCP_NODELAY`` on each
accepted connection sends both at once.

uvicorn loads the class by its import path (:data:`HTTP_PROTOCOL`) in every worker.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["HTTP_PROTOCOL", "NoDelayHTTPProtocol", "no_delay"]

HTTP_PROTOCOL = "bot.transport:NoDelayHTTPProtocol"
"""What to pass as uvicorn's ``http`` setting."""


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on *transport*'s TCP socket (others are left alone)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11), Nagle off."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport)
        super().connection_made(transport)
