"""Where the project keeps its shipped config, knowledge entries and runtime data."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from yxby.errors import DataDirError

__all__ = ["PROJECT_ROOT", "config_dir", "data_dir", "entries_dir", "usable_dir"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_REASONS = {
    errno.ENOENT: "上级路径不存在或不允许在此创建",
    errno.ENOTDIR: "路径中有一段是文件而不是目录",
    errno.EEXIST: "这是一个文件，不是目录",
    errno.EACCES: "没有权限",
    errno.EPERM: "没有权限",
    errno.EROFS: "文件系统是只读的",
    errno.ENOSPC: "磁盘空间不足",
    errno.ELOOP: "符号链接层数过多",
    errno.ENAMETOOLONG: "路径太长",
}


def config_dir() -> Path:
    """Shipped YAML settings: ``YXBY_CONFIG_DIR`` or the project's ``config/``."""
    env = os.environ.get("YXBY_CONFIG_DIR")
    return Path(env) if env else PROJECT_ROOT / "config"


def entries_dir() -> Path:
    """Knowledge entries: ``YXBY_KNOWLEDGE_DIR`` or the project's ``knowledge/entries``."""
    env = os.environ.get("YXBY_KNOWLEDGE_DIR")
    return Path(env) if env else PROJECT_ROOT / "knowledge" / "entries"


def usable_dir(path: Path, *, variable: str = "YXBY_DATA_DIR") -> Path:
    """Create *path* if needed and check it is a writable directory.

    Raises ``DataDirError`` (Chinese, naming *variable* as the setting to check) instead of
    an ``OSError``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
        raise DataDirError(str(path), reason, variable=variable) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(str(path), "没有写权限", variable=variable)
    return path


def data_dir(create: bool = True) -> Path:
    """Runtime data (SQLite file, jieba cache): ``YXBY_DATA_DIR``, else XDG data home.

    Defaults to ``$XDG_DATA_HOME/yxby`` or ``~/.local/share/yxby``. With *create* the
    directory is made and checked; an unusable one raises ``DataDirError``.
    """
    env = os.environ.get("YXBY_DATA_DIR")
    if env:
        path, variable = Path(env), "YXBY_DATA_DIR"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg else Path.home() / ".local" / "share"
        path, variable = base / "yxby", "XDG_DATA_HOME" if xdg else "HOME"
    if create:
        usable_dir(path, variable=variable)
    return path
