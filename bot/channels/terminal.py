"""The terminal channel: the same conversation as WeChat and Telegram, in a shell.

Reads one message per line from a terminal or from piped stdin and prints the replies.
Buttons are shown as "（回复：已解决 / 未解决）"; typing a button's label sends it as a tap,
exactly as tapping it would on Telegram. Pushes for this user (a commissioner's relayed
message, a ticket result) are printed from the outbox as they arrive; while an interactive
chat is open, requests for a person that nobody took in time turn into tickets as they do
under ``yxby serve``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TextIO

from bot.app import App
from bot.types import Channel, Incoming, MessageKind, Reply, reply_from_payload

__all__ = ["TerminalChat"]


class TerminalChat:
    """One terminal user (an enterprise user, or a commissioner bound to the terminal)."""

    def __init__(
        self,
        app: App,
        *,
        user_key: str,
        out: TextIO,
        prefix: str = "助手：",
        channel: str = Channel.TERMINAL.value,
    ) -> None:
        self.app = app
        self.user_key = user_key
        self.out = out
        self.prefix = prefix
        self.channel = channel
        self._buttons: dict[str, str] = {}
        self._lock = threading.Lock()

    def _print(self, replies: Sequence[Reply], prefix: str | None = None) -> None:
        with self._lock:
            for reply in replies:
                self.out.write(f"{prefix or self.prefix}{reply.render_plain()}\n")
                for button in reply.buttons:
                    self._buttons[button.label] = button.payload
            self.out.flush()

    def send(self, line: str) -> list[Reply]:
        """Send one line as this user and print the replies."""
        text = line.rstrip("\r\n")
        payload = self._buttons.get(text.strip())
        if payload is not None:
            msg = Incoming(self.channel, self.user_key, text, kind=MessageKind.BUTTON,
                           payload=payload)  # fmt: skip
        else:
            msg = Incoming(self.channel, self.user_key, text)
        self._buttons = {}
        replies = self.app.dialogue.handle(msg)
        self._print(replies)
        return replies

    def deliver_pushes(self) -> int:
        """Print pushes waiting in the outbox for this user; how many there were."""
        payloads = self.app.inbox.take_local(self.channel, self.user_key)
        if payloads:
            self._print([reply_from_payload(p) for p in payloads], prefix="【通知】")
        return len(payloads)

    def tick(self) -> int:
        """Background work of a chat left open: a request for a person that nobody took in
        time becomes a ticket (as under ``yxby serve``), then pushes are printed; how many."""
        self.app.live.expire()
        return self.deliver_pushes()

    def run(self, lines: Iterable[str], *, interactive: bool, greeting: bool = True) -> None:
        """Chat until the input ends. Interactive sessions also poll for pushes."""
        if greeting:
            r = self.app.replies
            self._print([Reply(r("welcome")), Reply(r("menu"))])
        if interactive:
            self.out.write("您：")
            self.out.flush()
        stop = threading.Event()
        poller = None
        if interactive:
            poller = threading.Thread(target=self._poll, args=(stop,), daemon=True)
            poller.start()
        try:
            for line in lines:
                if interactive and line.strip() in ("/quit", "/exit", "退出聊天"):
                    break
                self.send(line)
                self.deliver_pushes()
                if interactive:
                    with self._lock:
                        self.out.write("您：")
                        self.out.flush()
        finally:
            stop.set()
            if poller is not None:
                poller.join(timeout=2)
            self.deliver_pushes()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            try:
                if self.tick():
                    with self._lock:
                        self.out.write("您：")
                        self.out.flush()
            except Exception:  # pragma: no cover - a broken poll must not kill the chat
                continue
