"""One error tree for the whole project (platform exceptions stay in their adapters)."""

from __future__ import annotations

__all__ = [
    "ConfigError",
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

    The message names the file, the line where known, the key and what was expected.
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
        keypart = f"'{key}': " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class KnowledgeError(YxbyError):
    """The knowledge base cannot be loaded or searched."""


class RoutingError(YxbyError):
    """A routing decision cannot be made (e.g. an unknown department)."""


class TicketError(YxbyError):
    """A ticket operation is not allowed or failed."""


class DatabaseError(YxbyError):
    """The database is unreachable or its schema is not at the expected revision."""


class InputError(YxbyError):
    """User input is unusable; the message is Chinese and safe to show to an end user."""
