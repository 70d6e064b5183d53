"""The living 名录库 (issue 14): sync from a 市场监管局 export, zombies, 包保 coverage."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_

from handoff.models import Enterprise

ACTIVE_STATUS = "存续"


def active_filter() -> ColumnElement[bool]:
    """SQL clause for the entities coverage and outreach count: 存续 and not a zombie."""
    return and_(Enterprise.status == ACTIVE_STATUS, Enterprise.zombie.is_(False))
