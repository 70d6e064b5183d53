"""Real servers for tests: the ASGI app under uvicorn on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from bot.transport import HTTP_PROTOCOL

__all__ = ["LiveServer", "eventually"]


class LiveServer:
    """Uvicorn serving *asgi* on a free port of 127.0.0.1, in a thread, lifespan on."""

    def __init__(self, asgi: Starlette) -> None:
        config = uvicorn.Config(asgi, lifespan="on", log_level="warning", http=HTTP_PROTOCOL)
        self.server = uvicorn.Server(config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        eventually(lambda: self.server.started or not self.thread.is_alive(), timeout=10)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait (bounded) for work running in another thread to reach a state."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
