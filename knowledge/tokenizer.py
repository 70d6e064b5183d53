"""Chinese tokenization for the knowledge base: jieba with a domain lexicon.

The same pipeline runs on entries and on queries: NFKC full/half-width folding and lower
case, jieba segmentation with the domain user dictionary, synonym rewriting to one
canonical term, stop-word removal and, optionally, jieba's search-mode sub-words (so
统一社会信用代码 also yields 信用, 代码 …).

jieba's own logging is silenced and its dictionary cache is written under the project's
data directory (``YXBY_DATA_DIR``), never to /tmp.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yxby.errors import KnowledgeError
from yxby.paths import config_dir, data_dir, usable_dir

__all__ = ["Analysis", "Lexicon", "Tokenizer", "load_lexicon", "normalize"]

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"

# A token is kept when it has a CJK ideograph, a letter or a digit.
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z0-9]")
_SPACES = re.compile(r"\s+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_CJK_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]{2,}")


def normalize(text: str) -> str:
    """NFKC-fold (full-width → half-width), lower-case and collapse white space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


@dataclass(frozen=True)
class Lexicon:
    """Domain words, synonym map (term → canonical) and stop words."""

    words: tuple[str, ...] = ()
    synonyms: dict[str, str] = field(default_factory=dict)
    stopwords: frozenset[str] = frozenset()
    userdict: Path | None = None


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KnowledgeError(f"{path}: 无法读取（{exc.strerror}）") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _synonym_groups(path: Path) -> list[list[str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: 无法读取同义词表（{exc}）") from None
    groups = data.get("groups", []) if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and len(g) >= 2 and all(isinstance(t, str) for t in g) for g in groups
    ):
        raise KnowledgeError(f"{path}: 「groups」应为词组列表，每组至少两个词")
    return [[normalize(t) for t in g] for g in groups]


def _department_groups(path: Path) -> list[list[str]]:
    """Names and aliases of each department, read as plain words (no routing import)."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: 无法读取部门表（{exc}）") from None
    groups = []
    for dept in data.get("departments", []) if isinstance(data, dict) else []:
        if isinstance(dept, dict) and isinstance(dept.get("name"), str):
            names = [dept["name"], dept.get("full_name") or "", *(dept.get("aliases") or [])]
            groups.append([normalize(n) for n in names if isinstance(n, str) and n])
    return groups


def load_lexicon(lexicon_dir: Path | None = None, departments_file: Path | None = None) -> Lexicon:
    """Read the user dictionary, synonym groups and stop words (plus department aliases)."""
    base = lexicon_dir or LEXICON_DIR
    groups = _synonym_groups(base / "synonyms.yaml")
    groups += _department_groups(departments_file or config_dir() / "departments.yaml")
    synonyms: dict[str, str] = {}
    words: list[str] = []
    for group in groups:
        head = group[0]
        for term in group:
            words.append(term)
            if term != head:
                synonyms.setdefault(term, head)
    stop = frozenset(normalize(w) for w in _read_lines(base / "stopwords.txt"))
    return Lexicon(
        words=tuple(dict.fromkeys(words)),
        synonyms=synonyms,
        stopwords=stop,
        userdict=base / "userdict.txt",
    )


@dataclass(frozen=True)
class Analysis:
    """Tokens of a text: all of them (with search-mode sub-words) and the whole words only.

    ``parts`` has, for each of ``words`` (same order), the search-mode sub-words it yielded
    (资金周转 → 资金, 周转); ``guessed`` are the Chinese words neither jieba's dictionary nor
    the lexicon knows (jieba's HMM joined unknown characters: 哪报, 想查) — often a cut in the
    wrong place rather than a word.
    """

    tokens: tuple[str, ...]
    words: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...] = ()
    guessed: frozenset[str] = frozenset()


_JIEBA_LOCK = threading.Lock()


def _initialize(tk: object, cache_file: Path) -> None:
    """Initialise a jieba tokenizer, reading its prefix-dictionary cache in one go.

    jieba's own loader unmarshals from a file object, which is several times slower than
    unmarshalling bytes already read; the cache is jieba's own format (written by jieba
    itself on first use), so this only changes how it is read.
    """
    import marshal

    base = _BASE_DICTIONARY.get(cache_file)
    if base is not None:  # a second tokenizer in this process (a reload): copy, don't parse
        tk.FREQ, tk.total = dict(base[0]), base[1]  # type: ignore[attr-defined]
        tk.initialized = True  # type: ignore[attr-defined]
        return
    if cache_file.is_file():
        try:
            freq, total = marshal.loads(cache_file.read_bytes())
        except (ValueError, EOFError, TypeError):
            pass  # a damaged cache: let jieba rebuild it
        else:
            _BASE_DICTIONARY[cache_file] = (dict(freq), total)
            tk.FREQ, tk.total = freq, total  # type: ignore[attr-defined]
            tk.initialized = True  # type: ignore[attr-defined]
            return
    tk.initialize()  # type: ignore[attr-defined]


_BASE_DICTIONARY: dict[Path, tuple[dict[str, int], int]] = {}
"""jieba's own dictionary as read from its cache file, before any user word was added
(unmarshalling it holds the GIL for a long while: a reload copies this instead)."""


class Tokenizer:
    """jieba-based tokenizer; one instance per knowledge base, safe to share between threads."""

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        *,
        search_mode: bool = True,
        char_unigrams: bool = False,
        char_bigrams: bool = False,
        extra_words: Iterable[str] = (),
        cache_dir: Path | None = None,
    ) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.lexicon = lexicon or load_lexicon()
        self.search_mode = search_mode
        self.char_unigrams = char_unigrams
        self.char_bigrams = char_bigrams
        tk = jieba.Tokenizer()
        cache = usable_dir(cache_dir) if cache_dir else usable_dir(data_dir() / "jieba")
        tk.tmp_dir = str(cache)
        with _JIEBA_LOCK:
            _initialize(tk, cache / "jieba.cache")
            if self.lexicon.userdict is not None:
                tk.load_userdict(str(self.lexicon.userdict))
            for word in (*self.lexicon.words, *extra_words):
                if len(word) > 1 and " " not in word:
                    tk.add_word(word, freq=None)
        self._tk = tk
        self._cache: dict[str, Analysis] = {}
        self.entry_terms: dict[str, str] = {}
        """The entries' terms, each once (see :func:`knowledge.base.prepare_entry`)."""

    def _keep(self, token: str) -> str | None:
        token = token.strip()
        if not token or not _MEANINGFUL.search(token):
            return None
        token = self.lexicon.synonyms.get(token, token)
        if token in self.lexicon.stopwords:
            return None
        return token

    def analyze(self, text: str) -> Analysis:
        """All tokens of *text* (for BM25) and its whole words (for coverage).

        In search mode each long word also yields its known 2- and 3-character sub-words
        (jieba's ``cut_for_search``); those count for ranking, but only the whole words
        say how much of a question is covered.
        """
        norm = normalize(text)
        tokens: list[str] = []
        words: list[str] = []
        parts: list[tuple[str, ...]] = []
        guessed: set[str] = set()
        if not norm:
            return Analysis((), ())
        freq = self._tk.FREQ
        for raw in self._tk.cut(norm):
            subs: list[str] = []
            if self.search_mode and len(raw) > 2:
                for n in (2, 3):
                    if len(raw) > n:
                        for i in range(len(raw) - n + 1):
                            gram = raw[i : i + n]
                            if freq.get(gram):
                                sub = self._keep(gram)
                                if sub is not None:
                                    subs.append(sub)
                tokens.extend(subs)
            tok = self._keep(raw)
            if tok is not None:
                tokens.append(tok)
                words.append(tok)
                parts.append(tuple(subs))
                if not freq.get(raw) and _CJK_WORD.fullmatch(raw):
                    guessed.add(tok)
        if self.char_unigrams or self.char_bigrams:
            # characters of the text help where jieba cut a phrase differently in the
            # question and in the entry; they count for ranking, not for coverage
            stop = self.lexicon.stopwords
            for run in _CJK_RUN.findall(norm):
                if self.char_unigrams:
                    tokens.extend(c for c in run if c not in stop)
                if self.char_bigrams:
                    grams = (run[i : i + 2] for i in range(len(run) - 1))
                    tokens.extend(g for g in grams if g not in stop)
        return Analysis(tuple(tokens), tuple(words), tuple(parts), frozenset(guessed))

    def tokenize(self, text: str) -> list[str]:
        """Tokens of *text* in order (duplicates kept: they count for BM25)."""
        return list(self.analyze(text).tokens)

    def analyze_query(self, text: str) -> Analysis:
        """Like :meth:`analyze`, memoised for short repeated queries."""
        hit = self._cache.get(text)
        if hit is None:
            hit = self.analyze(text)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[text] = hit
        return hit
