"""Phrase matching for routing: normalisation, longest-first phrase hits and clauses.

Routing recognises needs and industries by phrases, not by tokens: ``水利工程`` must be read
as one phrase, not as ``工程`` (construction). :class:`PhraseMatcher` therefore finds every
occurrence of every phrase and keeps the longest ones first, so a longer phrase always
beats a shorter phrase it overlaps. Phrases mapped to ``None`` are *neutral*: they consume
their text (e.g. ``营商环境`` hides ``环境``) and count for nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Clause", "Hit", "PhraseMatcher", "clauses", "normalize", "quote"]

T = TypeVar("T")

_SPACE = re.compile(r"\s+")
# Clause boundaries after NFKC (full-width ，；！？ become ASCII; 。 stays).
_BOUNDARY = re.compile(r"[,.;!?。\n]+")


def normalize(text: str) -> str:
    """NFKC, case-folded, whitespace removed: the form every phrase and text is matched in."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", text).casefold())


def quote(phrases: Iterable[str], limit: int = 3) -> str:
    """Phrases in Chinese quotation marks, e.g. ``“宾馆”“酒店”`` (at most *limit*)."""
    return "".join(f"“{p}”" for p in list(phrases)[:limit])


@dataclass(frozen=True)
class Hit(Generic[T]):
    """One phrase found in a normalised text, with the value it stands for."""

    phrase: str
    start: int
    end: int
    value: T


class PhraseMatcher(Generic[T]):
    """Find phrases in text, longest first, without overlaps.

    *phrases* maps each phrase to its value (``None`` for a neutral phrase). Phrases are
    normalised with :func:`normalize`; texts passed to :meth:`find` must be normalised too.
    """

    def __init__(self, phrases: Mapping[str, T | None]) -> None:
        table: dict[str, T | None] = {}
        for phrase, value in phrases.items():
            key = normalize(phrase)
            if key:
                table[key] = value
        # longest first, so the first claim on a character is the longest phrase there
        self._phrases = sorted(table.items(), key=lambda item: -len(item[0]))

    def __len__(self) -> int:
        return len(self._phrases)

    def find(self, text: str) -> list[Hit[T]]:
        """Non-overlapping hits of non-neutral phrases in *text*, in text order."""
        candidates: list[tuple[int, int, str, T | None]] = []
        for rank, (phrase, value) in enumerate(self._phrases):
            start = text.find(phrase)
            while start != -1:
                candidates.append((rank, start, phrase, value))
                start = text.find(phrase, start + 1)
        # by length (rank is length order), then leftmost
        candidates.sort(key=lambda c: (-len(c[2]), c[1], c[0]))
        taken = bytearray(len(text))
        hits: list[Hit[T]] = []
        for _rank, start, phrase, value in candidates:
            end = start + len(phrase)
            if any(taken[start:end]):
                continue
            taken[start:end] = b"\x01" * len(phrase)
            if value is not None:
                hits.append(Hit(phrase, start, end, value))
        hits.sort(key=lambda h: h.start)
        return hits


@dataclass(frozen=True)
class Clause:
    """A stretch of normalised text between punctuation; *self_description* when the writer
    says what the enterprise is or does there (我们是…, 从事…, 经营一家…)."""

    start: int
    end: int
    self_description: bool

    def __contains__(self, position: object) -> bool:
        return isinstance(position, int) and self.start <= position < self.end


def clauses(text: str, markers: Iterable[str]) -> list[Clause]:
    """Split normalised *text* into clauses and flag those containing a self-description marker."""
    marks = [normalize(m) for m in markers if normalize(m)]
    result: list[Clause] = []
    start = 0
    for boundary in [*_BOUNDARY.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        if end > start:
            part = text[start:end]
            result.append(Clause(start, end, any(m in part for m in marks)))
        if boundary:
            start = boundary.end()
    return result
