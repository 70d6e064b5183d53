"""Session-wide test setup shared by every test module.

Runtime data (jieba's dictionary cache, SQLite files) goes to a temporary directory unless
``YXBY_DATA_DIR`` is set, so tests never write into a real deployment's data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_TMP = tempfile.TemporaryDirectory(prefix="yxby-test-")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("YXBY_DATA_DIR", str(Path(_TMP.name) / "data"))


def pytest_unconfigure(config: pytest.Config) -> None:
    _TMP.cleanup()


@pytest.fixture(scope="session")
def kb() -> Iterator[object]:
    """The shipped knowledge base, loaded once per session."""
    import knowledge

    yield knowledge.load()


@pytest.fixture(scope="session")
def tokenizer() -> object:
    """A tokenizer with the shipped lexicon, shared by the session."""
    from knowledge.tokenizer import Tokenizer

    return Tokenizer()
