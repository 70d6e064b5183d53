"""The on-disk cache of tokenized entries, so a start (and ``yxby ask``) skips re-tokenizing.

Building a knowledge base is mostly jieba cutting every entry into terms
(:func:`knowledge.base.prepare_entry`); the BM25 arrays are then built from those terms in
a blink. The cache keeps each entry's terms, keyed by

* a **tokenizer fingerprint** — a hash of this module's format version, jieba's version,
  the lexicon files (user dictionary, synonyms, stop words, the departments' names and
  aliases) and the ``tokenizer`` and ``fields`` settings: it names the cache file, so a
  lexicon or settings edit starts a fresh file;
* an **entry key** — a hash of the entry's validated content: an edited entry gets a new
  key and is re-tokenized, every other entry is reused.

The index fingerprint (:func:`index_fingerprint`) combines the tokenizer fingerprint, all
the settings and the served entries' keys: equal fingerprints mean an identical index.

Format: one ``numpy.savez`` file (``allow_pickle=False``: only strings and integers, never
pickled objects) under ``<data dir>/kb-cache/``, written to a temporary file and renamed,
so readers see the old file or the new one. A missing, corrupt, truncated or foreign file
is ignored (and rewritten after the next build); a cache that cannot be written (read-only
data directory) is logged and skipped — the cache never stops the bot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from knowledge.base import Prepared, prepare_entry
from knowledge.schema import Entry
from knowledge.settings import KnowledgeSettings
from knowledge.tokenizer import LEXICON_DIR, Tokenizer

__all__ = [
    "CACHE_VERSION",
    "TokenCache",
    "entry_key",
    "index_fingerprint",
    "kb_cache_dir",
    "lexicon_files",
    "prepare_entries",
    "tokenizer_fingerprint",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bump when :func:`knowledge.base.prepare_entry` or the tokenizer changes what it emits."""


def lexicon_files(
    lexicon_dir: Path | None = None, departments_file: Path | None = None
) -> list[Path]:
    """The files the tokenizer reads (as :func:`knowledge.tokenizer.load_lexicon` does)."""
    from yxby.paths import config_dir

    base = lexicon_dir or LEXICON_DIR
    return [
        base / "synonyms.yaml",
        base / "stopwords.txt",
        base / "userdict.txt",
        departments_file or config_dir() / "departments.yaml",
    ]


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def tokenizer_fingerprint(settings: KnowledgeSettings, files: Sequence[Path]) -> str:
    """A hash of everything that changes how an entry is tokenized."""
    import jieba

    def content(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError:
            return b"\0missing"

    return _digest(
        [
            f"yxby-kb-tokens/{CACHE_VERSION}/jieba-{jieba.__version__}".encode(),
            settings.tokenizer.model_dump_json().encode(),
            settings.fields.model_dump_json().encode(),
            *(str(p.name).encode() + b"\0" + content(p) for p in files),
        ]
    )


def entry_key(entry: Entry) -> str:
    """A hash of the entry's validated content (what tokenizing it depends on, and more)."""
    return hashlib.sha256(entry.model_dump_json().encode()).hexdigest()[:32]


def index_fingerprint(
    tokenizer_fp: str, settings: KnowledgeSettings, entries: Iterable[Entry]
) -> str:
    """A hash naming one index: tokenizer, all settings and the served entries in order."""
    return _digest(
        [
            tokenizer_fp.encode(),
            settings.model_dump_json().encode(),
            *(entry_key(e).encode() for e in entries),
        ]
    )[:16]


def prepare_entries(
    entries: Sequence[Entry],
    tokenizer: Tokenizer,
    settings: KnowledgeSettings,
    known: dict[str, Prepared],
) -> tuple[list[Prepared], int]:
    """Each entry's :class:`Prepared`, from *known* (by entry key) or tokenized now.

    Newly tokenized entries are added to *known*; returns the list and how many were new.
    """
    out: list[Prepared] = []
    fresh = 0
    for entry in entries:
        key = entry_key(entry)
        prepared = known.get(key)
        if prepared is None:
            prepared = known[key] = prepare_entry(entry, tokenizer, settings)
            fresh += 1
        out.append(prepared)
    return out, fresh


class TokenCache:
    """One tokenizer fingerprint's cache file: entry key → :class:`Prepared`."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint
        self.path = directory / f"tokens-{fingerprint[:20]}.npz"

    def read(self) -> dict[str, Prepared]:
        """The cached entries; empty when the file is missing, damaged or not this one's."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("version") != CACHE_VERSION or meta.get("tokenizer") != (
                    self.fingerprint
                ):
                    log.info("知识库缓存 %s 不属于当前词表/设置，已忽略", self.path)
                    return {}
                return _decode(
                    meta["keys"],
                    data["vocab"],
                    data["doc"],
                    data["cnt"],
                    data["doc_ptr"],
                    data["ask"],
                    data["ask_ptr"],
                    data["q_ptr"],
                )
        except FileNotFoundError:
            return {}
        except Exception as exc:  # any damage (bad zip, EOF, wrong arrays): rebuild
            log.warning("知识库缓存 %s 已损坏，将重建：%s", self.path, exc)
            return {}

    def write(self, prepared: Mapping[str, Prepared]) -> bool:
        """Replace the file with *prepared* (atomically); False (logged) when it cannot."""
        keys = sorted(prepared)
        vocab: dict[str, int] = {}
        # typed arrays filled entry by entry: converting million-item lists to numpy at the
        # end is one long call that holds the GIL (requests stall while a reload saves)
        doc, cnt, ask = array("i"), array("i"), array("i")
        doc_ptr, ask_ptr, q_ptr = array("q", [0]), array("q", [0]), array("q", [0])
        for key in keys:
            p = prepared[key]
            doc.extend(vocab.setdefault(t, len(vocab)) for t in p.terms)
            cnt.extend(p.counts)
            doc_ptr.append(len(doc))
            for words in p.asked:
                ask.extend(vocab.setdefault(t, len(vocab)) for t in words)
                ask_ptr.append(len(ask))
            q_ptr.append(len(ask_ptr) - 1)
        meta = {"version": CACHE_VERSION, "tokenizer": self.fingerprint, "keys": keys}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tokens-", suffix=".npz", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(
                        fh,
                        meta=np.array(json.dumps(meta)),
                        vocab=np.array(list(vocab), dtype=str),
                        doc=np.frombuffer(doc, dtype=np.int32),
                        cnt=np.frombuffer(cnt, dtype=np.int32),
                        doc_ptr=np.frombuffer(doc_ptr, dtype=np.int64),
                        ask=np.frombuffer(ask, dtype=np.int32),
                        ask_ptr=np.frombuffer(ask_ptr, dtype=np.int64),
                        q_ptr=np.frombuffer(q_ptr, dtype=np.int64),
                    )
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("无法写入知识库缓存 %s：%s", self.path, exc)
            return False
        for old in self.directory.glob("tokens-*.npz"):  # other fingerprints are stale
            if old != self.path:
                old.unlink(missing_ok=True)
        return True


def _decode(
    keys: Sequence[str],
    vocab: np.ndarray,
    doc: np.ndarray,
    cnt: np.ndarray,
    doc_ptr: np.ndarray,
    ask: np.ndarray,
    ask_ptr: np.ndarray,
    q_ptr: np.ndarray,
) -> dict[str, Prepared]:
    n = len(keys)
    if len(doc_ptr) != n + 1 or len(q_ptr) != n + 1 or len(ask_ptr) != int(q_ptr[-1]) + 1:
        raise ValueError("数组长度不一致")
    if int(doc_ptr[-1]) != len(doc) or int(ask_ptr[-1]) != len(ask) or len(cnt) != len(doc):
        raise ValueError("数组长度不一致")
    if cnt.dtype.kind != "i" or (len(cnt) and int(cnt.min()) < 1):
        raise ValueError("词频无效")
    for ids in (doc, ask):
        if ids.dtype.kind != "i" or (len(ids) and int(ids.min()) < 0):
            raise ValueError("词编号无效")
    words = vocab.astype(object)
    doc_terms = words[doc].tolist()  # IndexError on a bad id
    counts = cnt.tolist()
    ask_terms = words[ask].tolist()
    dp, ap, qp = doc_ptr.tolist(), ask_ptr.tolist(), q_ptr.tolist()
    out: dict[str, Prepared] = {}
    for i, key in enumerate(keys):
        asked = tuple(tuple(ask_terms[ap[j] : ap[j + 1]]) for j in range(qp[i], qp[i + 1]))
        terms = tuple(doc_terms[dp[i] : dp[i + 1]])
        if len(set(terms)) != len(terms):
            raise ValueError("同一条目的词重复")
        out[str(key)] = Prepared(terms, tuple(counts[dp[i] : dp[i + 1]]), asked)
    return out


def kb_cache_dir() -> Path | None:
    """Where the tokenized entries are cached (``<data dir>/kb-cache``); ``None`` when the
    data directory is unusable or ``YXBY_KB_CACHE=0`` (the cache is only a speed-up)."""
    from yxby.errors import DataDirError
    from yxby.paths import data_dir

    if os.environ.get("YXBY_KB_CACHE", "1").strip() in {"0", "off", "no"}:
        return None
    try:
        return data_dir() / "kb-cache"
    except DataDirError:
        return None
