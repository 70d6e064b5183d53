"""`yxby notices …` and `yxby enterprises code`: outreach and verified binding (issue 14)."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
