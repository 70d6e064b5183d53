"""`yxby supervise …`: 督办, 回访 and the 联席会议 (issue 12)."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
