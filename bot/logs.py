"""How ``yxby serve`` logs: plain lines (default) or one JSON object per line.

``--log-format json`` writes ``{"time", "level", "logger", "message", "pid"}`` (and
``"exc"`` with the traceback) per record, for log shippers. Either way every record
goes through :class:`yxby.redact.RedactingFilter` first (secrets and personal data masked,
at every level).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text", *, uvicorn: bool = True) -> None:
    """Set up the root logger at *level* in *fmt* (``text`` or ``json``), redacting; with
    *uvicorn*, uvicorn's loggers write through it too (else uvicorn's own configuration,
    :func:`yxby.redact.uvicorn_log_config`, is used)."""
    from yxby.redact import configure

    configure(level)  # one redacting handler on the root logger; noisy libraries quiet
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if uvicorn:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check on every probe
