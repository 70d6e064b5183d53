"""Typed settings of the knowledge base (``config/knowledge.yaml``)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = ["KnowledgeSettings", "load_settings"]


class BM25Settings(StrictModel):
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    epsilon: float = Field(0.25, ge=0)


class FieldWeights(StrictModel):
    title: int = Field(2, ge=0, le=10)
    questions: int = Field(2, ge=0, le=10)
    keywords: int = Field(2, ge=0, le=10)
    answer: int = Field(1, ge=0, le=10)


class TokenizerSettings(StrictModel):
    """How text is cut into terms (see ``knowledge.tokenizer.Tokenizer``)."""

    search_mode: bool = True
    char_unigrams: bool = False
    char_bigrams: bool = False


class DecisionSettings(StrictModel):
    answer_confidence: float = Field(0.32, ge=0, le=1)
    answer_margin: float = Field(1.3, ge=1)
    answer_gap: float = Field(0.2, ge=0, le=1)
    sure_confidence: float = Field(0.9, ge=0, le=1.01)
    sure_margin: float = Field(1.1, ge=1)
    suggest_confidence: float = Field(0.2, ge=0, le=1)
    suggest_limit: int = Field(3, ge=1, le=9)
    missing_word_share: float = Field(0.35, gt=0, le=1.01)
    """No confident answer when the best hit lacks a word of the query that carries at least
    this share of the query's idf weight (``Hit.missing_share``); 1.01 turns it off."""

    @model_validator(mode="after")
    def _ordered(self) -> DecisionSettings:
        if self.suggest_confidence > self.answer_confidence:
            raise ValueError("suggest_confidence 不能大于 answer_confidence")
        return self


class LimitSettings(StrictModel):
    max_query_chars: int = Field(500, ge=10, le=100_000)


class HandoffSettings(StrictModel):
    patterns: tuple[str, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"正则表达式 {pattern!r} 有误：{exc}") from None
        return value


class KnowledgeSettings(StrictModel):
    """Everything ``config/knowledge.yaml`` may say."""

    bm25: BM25Settings = BM25Settings()
    fields: FieldWeights = FieldWeights()
    tokenizer: TokenizerSettings = TokenizerSettings()
    decision: DecisionSettings = DecisionSettings()
    limits: LimitSettings = LimitSettings()
    handoff: HandoffSettings = HandoffSettings()


def load_settings(path: Path | None = None) -> KnowledgeSettings:
    """Load ``config/knowledge.yaml`` (or *path*); defaults when the default file is absent."""
    p = path or config_dir() / "knowledge.yaml"
    if path is None and not p.exists():
        return KnowledgeSettings()
    return load_model(p, KnowledgeSettings)
