"""One error tree for the whole project (platform exceptions stay in their adapters)."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataDirError",
    "DatabaseError",
    "InputError",
    "KnowledgeError",
    "RoutingError",
    "TicketError",
    "YxbyError",
]


class YxbyError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(YxbyError):
    """A configuration file is missing, unreadable or invalid.

    The message names the file, the line where known, the key and what was expected;
    ``str()`` reads ``path:line: 「key」message``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.detail = message
        where = path or ""
        if path and line:
            where = f"{path}:{line}"
        prefix = f"{where}: " if where else ""
        # a message that already names its key (「key」…) is not prefixed with it again
        keypart = f"「{key}」" if key and f"「{key}」" not in message else ""
        super().__init__(f"{prefix}{keypart}{message}")


class DataDirError(ConfigError):
    """The runtime data directory cannot be created or written to.

    ``path`` is the directory, ``reason`` why (Chinese) and ``variable`` the environment
    variable that chose it, so the message can tell the user what to check.
    """

    def __init__(self, path: str, reason: str, *, variable: str = "YXBY_DATA_DIR") -> None:
        super().__init__(f"数据目录 {path} 不可用：{reason}（请检查 {variable}）")
        self.path = path
        self.reason = reason
        self.variable = variable


class KnowledgeError(YxbyError):
    """The knowledge base cannot be loaded or searched.

    ``problems`` lists what kept entries out (each with file:line) when that is the cause.
    """

    def __init__(self, message: str, *, problems: tuple[object, ...] = ()) -> None:
        self.problems = problems
        super().__init__(message)


class RoutingError(YxbyError):
    """A routing decision cannot be made (e.g. an unknown department)."""


class TicketError(YxbyError):
    """A ticket operation is not allowed or failed."""


class DatabaseError(YxbyError):
    """The database is unreachable or its schema is not at the expected revision."""


class InputError(YxbyError):
    """User input is unusable; the message is Chinese and safe to show to an end user."""
