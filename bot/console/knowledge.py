"""知识库查询 in the console: search the 企业服务知识库 and reuse an entry's answer.

``GET /console/kb?q=`` lists the hits of :meth:`knowledge.KnowledgeBase.search` with their
score and confidence, the matched terms highlighted in the title and answer, the department
and the source document. ``GET /console/kb/search.json?q=[&limit=]`` answers the same as
JSON for other pages: ``/static/kb.js`` puts a small search box next to every
``<textarea data-kb-target>`` whose 「填入回复」 button copies an entry's answer into it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.console.auth import require_staff
from handoff.accounts import Staff
from yxby.errors import InputError

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.pages import Pages
    from knowledge import Hit, KnowledgeBase

__all__ = ["KbHit", "highlight", "routes", "search"]

PAGE_HITS = 10
MAX_HITS = 20


def highlight(text: str, terms: tuple[str, ...] | list[str]) -> list[tuple[str, bool]]:
    """*text* cut into ``(piece, matched)`` runs where any of *terms* occurs (any case,
    longest term first)."""
    wanted = sorted({t for t in terms if t.strip()}, key=len, reverse=True)
    if not wanted or not text:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in wanted), re.IGNORECASE)
    pieces: list[tuple[str, bool]] = []
    at = 0
    for found in pattern.finditer(text):
        if found.start() > at:
            pieces.append((text[at : found.start()], False))
        pieces.append((found.group(0), True))
        at = found.end()
    if at < len(text):
        pieces.append((text[at:], False))
    return pieces


@dataclass(frozen=True)
class KbHit:
    """One hit as the console shows it."""

    id: str
    title: list[tuple[str, bool]]
    answer: list[tuple[str, bool]]
    answer_text: str
    department: str
    score: float
    confidence: float
    matched_terms: tuple[str, ...]
    source_document: str
    source_section: str | None
    source_url: str | None
    confident: bool
    """The bot would give this answer on its own (the knowledge base's decision rule)."""

    @classmethod
    def of(cls, hit: Hit, *, confident: bool = False) -> KbHit:
        """From a knowledge-base hit."""
        entry = hit.entry
        return cls(
            id=entry.id,
            title=highlight(entry.title, hit.matched_terms),
            answer=highlight(entry.answer, hit.matched_terms),
            answer_text=entry.answer,
            department=entry.department,
            score=round(hit.score, 2),
            confidence=round(hit.confidence, 2),
            matched_terms=hit.matched_terms,
            source_document=entry.source.document,
            source_section=entry.source.section,
            source_url=entry.source.url,
            confident=confident,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``title`` and ``answer`` plain; ``*_marks`` as [text, matched] runs)."""
        return {
            "id": self.id,
            "title": "".join(p for p, _ in self.title),
            "title_marks": [[p, m] for p, m in self.title],
            "answer": self.answer_text,
            "answer_marks": [[p, m] for p, m in self.answer],
            "department": self.department,
            "score": self.score,
            "confidence": self.confidence,
            "matched_terms": list(self.matched_terms),
            "source": {
                "document": self.source_document,
                "section": self.source_section,
                "url": self.source_url,
            },
            "confident": self.confident,
        }


def search(kb: KnowledgeBase, text: str, limit: int = PAGE_HITS) -> list[KbHit]:
    """The hits for *text* (``InputError`` when it is empty or too long)."""
    from knowledge.base import Action, choose

    query = kb.check_query(text)
    hits = [h for h in kb.search(query, limit) if h.score > 0]
    action, _, _ = choose(hits, kb.settings.decision)
    return [KbHit.of(h, confident=i == 0 and action is Action.ANSWER) for i, h in enumerate(hits)]


def routes(app: App, pages: Pages) -> list[BaseRoute]:
    """``GET /console/kb`` and ``GET /console/kb/search.json``."""

    def run(text: str, limit: int) -> list[KbHit]:
        return search(app.kb, text, limit)

    @require_staff
    async def kb_page(request: Request, staff: Staff) -> Response:
        query = request.query_params.get("q", "").strip()
        hits: list[KbHit] = []
        error = None
        if query:
            try:
                hits = await asyncio.to_thread(run, query, PAGE_HITS)
            except InputError as exc:
                error = str(exc)
        return pages.render(
            "kb.html", staff=staff, q=query, hits=hits, error=error, searched=bool(query)
        )

    @require_staff
    async def kb_json(request: Request, staff: Staff) -> Response:
        query = request.query_params.get("q", "").strip()
        try:
            limit = max(1, min(MAX_HITS, int(request.query_params.get("limit", PAGE_HITS))))
        except ValueError:
            limit = PAGE_HITS
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        try:
            hits = await asyncio.to_thread(run, query, limit)
        except InputError as exc:
            return JSONResponse(
                {"query": query, "error": str(exc), "hits": []}, status_code=400, headers=headers
            )
        return JSONResponse({"query": query, "hits": [h.to_dict() for h in hits]}, headers=headers)

    return [
        Route("/console/kb", kb_page, methods=["GET"], name="console_kb"),
        Route("/console/kb/search.json", kb_json, methods=["GET"], name="console_kb_search"),
    ]
