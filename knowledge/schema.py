"""The schema of a knowledge entry, as editors write it in ``knowledge/entries/*.yaml``.

A file holds one or more YAML documents; each document is either a single entry (a
mapping) or a list of entries. Unknown keys are errors.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import Field, field_validator, model_validator

from yxby.yamlconf import StrictModel

__all__ = ["ENTRY_ID_PATTERN", "REVIEW_TAG", "Entry", "Source"]

ENTRY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")

REVIEW_TAG = "review"
"""The tag of an entry a deployment must check and localise before relying on it (the
general procedure is right, but the contact, channel or current rule may differ locally)."""


class Source(StrictModel):
    """Where an entry's facts come from."""

    document: str = Field(min_length=1)
    section: str | None = None
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError("应为 http(s) 网址")
        return value


class Entry(StrictModel):
    """One question-and-answer entry of the 企业服务知识库."""

    id: str
    title: str = Field(min_length=1, max_length=80)
    questions: tuple[str, ...] = Field(min_length=1)
    answer: str
    department: str = Field(min_length=1)
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: Source
    updated: dt.date
    effective: dt.date | None = None
    expires: dt.date | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ENTRY_ID_PATTERN.match(value):
            raise ValueError(
                "应为稳定的条目编号：2–80 个小写字母、数字、“.”“_”或“-”，如 seed-time-limit"
            )
        return value

    @field_validator("questions", "keywords", "tags")
    @classmethod
    def _no_blank_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip() for v in value)
        if any(not v for v in cleaned):
            raise ValueError("列表中不能有空项")
        return cleaned

    @model_validator(mode="after")
    def _dates(self) -> Entry:
        if self.effective and self.expires and self.expires < self.effective:
            raise ValueError("失效日期 expires 早于生效日期 effective")
        return self

    @property
    def needs_review(self) -> bool:
        """True when the entry carries :data:`REVIEW_TAG`."""
        return REVIEW_TAG in self.tags

    def is_expired(self, today: dt.date) -> bool:
        """True when the entry's ``expires`` date has passed."""
        return self.expires is not None and self.expires < today

    def is_effective(self, today: dt.date) -> bool:
        """True when the entry is in force on *today* (started and not expired)."""
        started = self.effective is None or self.effective <= today
        return started and not self.is_expired(today)
