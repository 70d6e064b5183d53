"""Typed settings of the dialogue engine (``config/dialogue.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = ["DialogueSettings", "load_dialogue_settings"]


class DialogueSettings(StrictModel):
    """What ``config/dialogue.yaml`` may say."""

    idle_timeout_minutes: int = Field(30, ge=1, le=7 * 24 * 60)
    max_message_chars: int = Field(2000, ge=50, le=100_000)
    min_description_chars: int = Field(10, ge=1, le=500)
    max_invalid_attempts: int = Field(3, ge=1, le=10)
    handoff_wait_minutes: int = Field(5, ge=1, le=24 * 60)
    status_limit: int = Field(5, ge=1, le=50)


def load_dialogue_settings(path: Path | None = None) -> DialogueSettings:
    """Load ``config/dialogue.yaml`` (or *path*)."""
    return load_model(path or config_dir() / "dialogue.yaml", DialogueSettings)
