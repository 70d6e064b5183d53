"""Where the project keeps its shipped config, knowledge entries and runtime data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PROJECT_ROOT", "config_dir", "data_dir", "entries_dir"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    """Shipped YAML settings: ``YXBY_CONFIG_DIR`` or the project's ``config/``."""
    env = os.environ.get("YXBY_CONFIG_DIR")
    return Path(env) if env else PROJECT_ROOT / "config"


def entries_dir() -> Path:
    """Knowledge entries: ``YXBY_KNOWLEDGE_DIR`` or the project's ``knowledge/entries``."""
    env = os.environ.get("YXBY_KNOWLEDGE_DIR")
    return Path(env) if env else PROJECT_ROOT / "knowledge" / "entries"


def data_dir(create: bool = True) -> Path:
    """Runtime data (SQLite file, jieba cache): ``YXBY_DATA_DIR``, else XDG data home.

    Defaults to ``$XDG_DATA_HOME/yxby`` or ``~/.local/share/yxby``.
    """
    env = os.environ.get("YXBY_DATA_DIR")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg else Path.home() / ".local" / "share"
        path = base / "yxby"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
