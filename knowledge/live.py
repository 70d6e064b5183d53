"""The knowledge base as served: reloaded live, swapped atomically, dated by the app's clock.

API (used by ``bot.app``, ``bot.server``, ``yxby serve`` and the editors' console)::

    live = LiveKnowledge(directory, today=app.today, clock=app.clock,
                         config_dir=cfg, cache_dir=data_dir / "kb-cache")
    live.current        # the KnowledgeBase in force now (never None once built)
    live.decide(text)   # LiveKnowledge *is* a KnowledgeBase: every method reads .current
    live.reload()       # rebuild now (blocking, thread-safe; concurrent calls queue up);
                        # returns the KnowledgeStatus after it. Never raises once serving.
    live.request_reload()  # ask the background reloader (non-blocking): SIGHUP, console
    live.status         # KnowledgeStatus: ok, error, error_file, error_line, problems,
                        # loaded_at, checked_at, fingerprint, entries, day, watching, reloading
    live.status.as_json()  # the same as /healthz shows under "knowledge"
    live.start(watch=True) / live.stop()   # background reloader (+ file watcher)

How it behaves:

* **Off the request path.** ``reload`` reads the YAML, tokenizes only entries it has not
  seen (by content hash; :mod:`knowledge.cache` keeps tokens on disk too), builds the BM25
  index in the calling thread (the reloader thread in ``yxby serve``) and then swaps one
  attribute: a request in flight finishes on the index it started with, the next one sees
  the new index. Requests never wait for a reload.
* **A broken edit keeps the last good index.** When a reload finds an error that the
  served index did not already have (bad YAML, a schema mistake, a duplicate id, a bad
  ``config/knowledge.yaml`` or lexicon file), nothing is swapped: the bot keeps answering
  from the last good build, and ``status`` says what is wrong (Chinese, ``file:line``),
  which ``/healthz``, the log and the console show. The next reload after the fix swaps and
  clears it. (At the very first load there is no previous index: good entries are served,
  broken ones are left out and reported, as ``knowledge.load`` does.)
* **Dates take effect on the day.** Entries are kept regardless of their dates; the served
  index holds those in force on ``today()`` (Asia/Shanghai, from the injected clock). The
  first access on a new day rebuilds from the already-tokenized entries when the set in
  force changed (the reloader also does it at midnight), so an entry whose ``expires`` is
  yesterday is gone at 00:00 without a restart.
* **Watching.** ``start(watch=True)`` watches the knowledge directory, the lexicon
  directory and ``config/knowledge.yaml`` / ``config/departments.yaml`` (watchfiles,
  debounced) and reloads on a change.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from knowledge.base import Decision, Hit, KnowledgeBase, Prepared
from knowledge.cache import (
    TokenCache,
    entry_key,
    index_fingerprint,
    lexicon_files,
    prepare_entries,
    tokenizer_fingerprint,
)
from knowledge.lint import LintIssue, check_entries
from knowledge.loader import FileMemo, entry_files
from knowledge.schema import Entry
from knowledge.settings import KnowledgeSettings, load_settings
from knowledge.tokenizer import LEXICON_DIR, Tokenizer, load_lexicon
from yxby.errors import ConfigError, KnowledgeError, YxbyError

if TYPE_CHECKING:
    from knowledge.index import BM25Index

__all__ = ["KnowledgeStatus", "LiveKnowledge"]

log = logging.getLogger("yxby.knowledge")

WATCH_DEBOUNCE_MS = 300
SHANGHAI = ZoneInfo("Asia/Shanghai")
RELOAD_SWITCH_INTERVAL = 0.0005
"""Seconds between GIL hand-offs while a reload builds (Python's default is 0.005)."""
CACHE_REWRITE_SHARE = 20
"""A reload rewrites the cache file once 1/20 of the entries are new to it."""
IDLE_CHECK_S = 30.0
"""How often the reloader wakes without a change (to roll the day over at midnight)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KnowledgeStatus:
    """How the served knowledge base stands (shown by ``/healthz`` and the console).

    ``ok`` is False while the files on disk have an error; ``error`` is then the first one
    (Chinese, ``file:line: …``) and ``problems`` all of them (up to 50). ``loaded_at`` is
    when the served index was built, ``checked_at`` the last reload attempt.
    """

    ok: bool
    error: str = ""
    error_file: str | None = None
    error_line: int | None = None
    problems: tuple[str, ...] = ()
    loaded_at: datetime | None = None
    checked_at: datetime | None = None
    fingerprint: str = ""
    entries: int = 0
    day: date | None = None
    watching: bool = False
    reloading: bool = False
    tokenized: int = 0
    """Entries the last build had to tokenize (the others came from memory or the cache)."""

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": "ok" if self.ok else "error",
            "entries": self.entries,
            "fingerprint": self.fingerprint,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "day": self.day.isoformat() if self.day else None,
            "watching": self.watching,
            "reloading": self.reloading,
            "tokenized": self.tokenized,
        }
        if not self.ok:
            out["error"] = self.error
            out["error_file"] = self.error_file
            out["error_line"] = self.error_line
            out["problems"] = list(self.problems)
        return out


@dataclass(frozen=True)
class _Served:
    kb: KnowledgeBase
    valid: tuple[Entry, ...]  # every loadable entry, whatever its dates
    prepared: dict[str, Prepared]  # by entry id, for every entry of ``valid``
    day: date
    sources: str  # hash of the files read
    fingerprint: str
    loaded_at: datetime
    problem_keys: frozenset[tuple[str, str]] = field(default=frozenset())


def _problem_key(issue: LintIssue) -> tuple[str, str]:
    return (issue.path, issue.message)  # lines move when text above is edited


class LiveKnowledge(KnowledgeBase):
    """A :class:`KnowledgeBase` whose content follows the files (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        today: Callable[[], date],
        clock: Callable[[], datetime] = _utc_now,
        config_dir: Path | None = None,
        lexicon_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        from yxby.paths import config_dir as default_config_dir

        # no super().__init__(): every KnowledgeBase field reads the current build
        self.directory = Path(directory)
        self.config_dir = config_dir or default_config_dir()
        self.lexicon_dir = lexicon_dir or LEXICON_DIR
        self.cache_dir = cache_dir
        self._today = today
        self._clock = clock
        self._lock = threading.RLock()
        self._served: _Served | None = None
        self._status = KnowledgeStatus(ok=False, error="知识库尚未加载")
        self._tokenizer: Tokenizer | None = None
        self._tokenizer_fp = ""
        self._known: dict[str, Prepared] = {}  # entry key → tokens, for this tokenizer
        self._failed_sources = ""  # the files of the last failed attempt (not retried)
        self._wanted = threading.Event()
        self._watch_ready = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reloading = False
        self._unsaved = 0  # entries tokenized since the cache file was written
        self._files: FileMemo = {}  # entry files as last parsed (unchanged: not re-parsed)
        self._build()  # the first load raises (KnowledgeError, ConfigError) like load()

    # ------------------------------------------------------------------ what is served

    @property
    def current(self) -> KnowledgeBase:
        """The knowledge base in force today (rolled over on the first access of a day)."""
        served = self._served
        assert served is not None
        if served.day != self._today():
            served = self._roll_day()
        return served.kb

    @property
    def status(self) -> KnowledgeStatus:
        """The last reload's outcome and what is served."""
        self.current  # noqa: B018 - a new day shows in the status too
        return replace(
            self._status,
            watching=self._watch_ready.is_set() and any(t.is_alive() for t in self._threads),
            reloading=self._reloading,
        )

    # Every KnowledgeBase field and method reads the current build, once per call, so a
    # swap in the middle of a request cannot mix two indexes.
    @property
    def entries(self) -> tuple[Entry, ...]:  # type: ignore[override]
        return self.current.entries

    @property
    def settings(self) -> KnowledgeSettings:  # type: ignore[override]
        return self.current.settings

    @property
    def tokenizer(self) -> Tokenizer:  # type: ignore[override]
        return self.current.tokenizer

    @property
    def problems(self) -> tuple[LintIssue, ...]:  # type: ignore[override]
        return self.current.problems

    @property
    def prepared(self) -> Sequence[Prepared] | None:  # type: ignore[override]
        return self.current.prepared

    @property
    def index(self) -> BM25Index:  # type: ignore[override]
        return self.current.index

    def __getattr__(self, name: str) -> Any:
        # private members of KnowledgeBase (_by_id, _questions …) come from the current build
        if name.startswith("__") or "_served" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.current, name)

    def __len__(self) -> int:
        return len(self.current)

    def __repr__(self) -> str:
        return f"LiveKnowledge({str(self.directory)!r}, entries={len(self)})"

    def get(self, entry_id: str) -> Entry | None:
        return self.current.get(entry_id)

    def check_query(self, text: str) -> str:
        return self.current.check_query(text)

    def search(self, text: str, limit: int = 10) -> list[Hit]:
        return self.current.search(text, limit)

    def wants_person(self, text: str) -> bool:
        return self.current.wants_person(text)

    def decide(self, text: str, limit: int = 10) -> Decision:
        return self.current.decide(text, limit)

    # ------------------------------------------------------------------ reloading

    def reload(self) -> KnowledgeStatus:
        """Re-read the files and swap in a new index if they changed and have no new error.

        Blocking (call it off the event loop); never raises: a failure keeps the served
        index and is reported in the returned status.
        """
        with self._lock:
            self._reloading = True
            # the build is Python work holding the GIL; hand it back to request threads
            # every half millisecond instead of every 5 ms while it runs
            interval = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, RELOAD_SWITCH_INTERVAL))
            # no cycle collection while building (a full pass over a big base stops every
            # thread); afterwards the survivors are frozen out of later full passes
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._build()
            except YxbyError as exc:
                self._failed(exc)
            except Exception as exc:  # a bug must not take the served index down
                log.exception("知识库重新加载失败")
                self._failed(KnowledgeError(f"重新加载失败：{type(exc).__name__}（详见日志）"))
            finally:
                gc.freeze()
                if collecting:
                    gc.enable()
                sys.setswitchinterval(interval)
                self._reloading = False
        return self.status

    def request_reload(self) -> None:
        """Ask the background reloader to reload soon (from a signal handler or a page)."""
        self._wanted.set()
        if not any(t.is_alive() for t in self._threads):
            threading.Thread(target=self.reload, name="yxby-kb-reload-once", daemon=True).start()

    def start(self, *, watch: bool = True, debounce_ms: int = WATCH_DEBOUNCE_MS) -> None:
        """Start the reloader thread (and, with *watch*, the file watcher). Idempotent."""
        if any(t.is_alive() for t in self._threads):
            return
        self._stop.clear()
        self._watch_ready.clear()
        self._threads = [
            threading.Thread(target=self._reloader, name="yxby-kb-reload", daemon=True)
        ]
        if watch:
            self._threads.append(
                threading.Thread(
                    target=self._watcher, args=(debounce_ms,), name="yxby-kb-watch", daemon=True
                )
            )
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background threads (waits for a reload in progress)."""
        self._stop.set()
        self._wanted.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        self._watch_ready.clear()
        with self._lock:
            self._save_cache()

    def watched_paths(self) -> list[Path]:
        """What the watcher watches: entries, lexicon, and the two config files' directory."""
        return [p for p in (self.directory, self.lexicon_dir, self.config_dir) if p.exists()]

    # ------------------------------------------------------------------ internals

    def _until_midnight(self) -> float:
        """Seconds until the next day begins in Asia/Shanghai (by the injected clock)."""
        now = self._clock().astimezone(SHANGHAI)
        midnight = datetime.combine(now.date() + timedelta(days=1), dt_time(), SHANGHAI)
        return max((midnight - now).total_seconds(), 0.0)

    def _reloader(self) -> None:
        while not self._stop.is_set():
            # wake at midnight too, so the new day's index is built here, not in a request
            if self._wanted.wait(min(IDLE_CHECK_S, self._until_midnight() + 0.05)):
                if self._stop.is_set():
                    return
                self._wanted.clear()
                self.reload()
            else:
                self.current  # noqa: B018 - roll over to a new day off the request path

    def _watcher(self, debounce_ms: int) -> None:
        import watchfiles

        config_names = {"knowledge.yaml", "departments.yaml"}
        entries_dir = self.directory.resolve()
        lexicon = self.lexicon_dir.resolve()

        def relevant(change: watchfiles.Change, path: str) -> bool:
            p = Path(path)
            if not watchfiles.DefaultFilter()(change, path):
                return False
            if p.parent.resolve() == self.config_dir.resolve() and p.name in config_names:
                return True
            inside = entries_dir in p.resolve().parents or lexicon in p.resolve().parents
            return inside and (p.suffix in {".yaml", ".yml", ".txt"} or not p.suffix)

        try:
            for changes in watchfiles.watch(
                *self.watched_paths(),
                watch_filter=relevant,
                debounce=debounce_ms,
                stop_event=self._stop,
                rust_timeout=500,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if not self._watch_ready.is_set():  # the watch is set up from now on:
                    self._watch_ready.set()  # catch what changed before it was
                    self._wanted.set()
                if changes:
                    log.info("知识库文件有变动（%d 处），重新加载", len(changes))
                    self._wanted.set()
        except Exception:  # watching is a convenience: SIGHUP and the console still work
            log.exception("无法监视知识库文件的变动；请用 SIGHUP 或控制台按钮重新加载")

    def _sources(self) -> str:
        """A hash of every file the build reads (paths and content)."""
        files = [
            *entry_files(self.directory),
            *lexicon_files(self.lexicon_dir, self._departments_file()),
            self.config_dir / "knowledge.yaml",
        ]
        h = hashlib.sha256()
        for path in files:
            h.update(str(path).encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                h.update(b"\0missing")
        return h.hexdigest()

    def _departments_file(self) -> Path:
        return self.config_dir / "departments.yaml"

    def _settings(self) -> KnowledgeSettings:
        path = self.config_dir / "knowledge.yaml"
        return load_settings(path) if path.exists() else KnowledgeSettings()

    def _tokenizer_for(self, settings: KnowledgeSettings) -> Tokenizer:
        fp = tokenizer_fingerprint(
            settings, lexicon_files(self.lexicon_dir, self._departments_file())
        )
        if self._tokenizer is None or fp != self._tokenizer_fp:
            lexicon = load_lexicon(self.lexicon_dir, self._departments_file())
            tokenizer = Tokenizer(lexicon, **settings.tokenizer.model_dump())
            self._tokenizer, self._tokenizer_fp = tokenizer, fp
            self._known = self._disk_cache().read() if self.cache_dir else {}
            self._unsaved = 0
        return self._tokenizer

    def _save_cache(self) -> None:
        if self.cache_dir is not None and self._unsaved and self._disk_cache().write(self._known):
            self._unsaved = 0

    def _disk_cache(self) -> TokenCache:
        assert self.cache_dir is not None
        return TokenCache(self.cache_dir, self._tokenizer_fp)

    def _build(self) -> None:
        started = time.perf_counter()
        served = self._served
        sources = self._sources()
        if served is not None:
            if sources == self._failed_sources:
                return  # still the files that failed: the error stands
            if sources == served.sources:  # unchanged, or an edit undone
                if self._failed_sources:
                    self._failed_sources = ""
                    self._set_status(served.kb.problems)
                return
        self._failed_sources = ""
        settings = self._settings()
        old_tokenizer = (self._tokenizer, self._tokenizer_fp, self._known, self._unsaved)
        try:
            tokenizer = self._tokenizer_for(settings)
            located, problems = check_entries(self.directory, self._files)
            if not located:
                raise KnowledgeError(
                    f"{self.directory}: 知识库没有一条可用的条目", problems=tuple(problems)
                )
            keys = frozenset(_problem_key(p) for p in problems)
            if served is not None:
                new = [p for p in problems if _problem_key(p) not in served.problem_keys]
                if new:
                    raise KnowledgeError(str(new[0]), problems=tuple(problems))
        except YxbyError:
            self._tokenizer, self._tokenizer_fp, self._known, self._unsaved = old_tokenizer
            self._failed_sources = sources
            raise
        valid = tuple(le.entry for le in located)
        prepared, fresh = prepare_entries(valid, tokenizer, settings, self._known)
        by_id = {e.id: p for e, p in zip(valid, prepared, strict=True)}
        day = self._today()
        kb, fingerprint = self._index(valid, by_id, day, settings, tokenizer, tuple(problems))
        self._served = _Served(
            kb, valid, by_id, day, sources, fingerprint, self._clock(), problem_keys=keys
        )
        self._set_status(problems, tokenized=fresh)  # at once: /healthz must match what is answered
        self._known = {k: self._known[k] for k in map(entry_key, valid)}  # drop the stale
        self._unsaved += fresh
        # rewriting the whole cache for an edit or two costs more than it saves: the few
        # entries are re-tokenized at the next start, or saved by stop()
        if self._unsaved * CACHE_REWRITE_SHARE >= len(valid):
            self._save_cache()
        log.info(
            "知识库已加载：%d 条在用（共 %d 条），重新分词 %d 条，%s，用时 %.2f 秒",
            len(kb), len(valid), fresh, fingerprint, time.perf_counter() - started,
        )  # fmt: skip
        if problems:
            log.warning(
                "知识库有 %d 处问题，有问题的条目未加载（yxby kb lint 查看全部）：\n  %s",
                len(problems),
                "\n  ".join(str(p) for p in problems[:20]),
            )

    def _index(
        self,
        valid: Sequence[Entry],
        prepared: dict[str, Prepared],
        day: date,
        settings: KnowledgeSettings,
        tokenizer: Tokenizer,
        problems: tuple[LintIssue, ...],
    ) -> tuple[KnowledgeBase, str]:
        entries = tuple(e for e in valid if e.is_effective(day))
        kb = KnowledgeBase(
            entries, settings, tokenizer, problems, prepared=[prepared[e.id] for e in entries]
        )
        return kb, index_fingerprint(self._tokenizer_fp, settings, entries)

    def _roll_day(self) -> _Served:
        served = self._served
        assert served is not None
        if not self._lock.acquire(blocking=False):
            return served  # a reload is building; it dates its index itself
        try:
            served = self._served
            assert served is not None
            day = self._today()
            if served.day == day:
                return served
            in_force = tuple(e.id for e in served.valid if e.is_effective(day))
            if in_force == tuple(e.id for e in served.kb.entries):
                self._served = replace(served, day=day)
            else:
                kb, fingerprint = self._index(
                    served.valid, served.prepared, day, served.kb.settings,
                    served.kb.tokenizer, served.kb.problems,
                )  # fmt: skip
                self._served = replace(
                    served, kb=kb, day=day, fingerprint=fingerprint, loaded_at=self._clock()
                )
                log.info("%s：在用条目按日期更新为 %d 条", day, len(kb))
            self._status = replace(
                self._status,
                day=day,
                entries=len(self._served.kb),
                fingerprint=self._served.fingerprint,
                loaded_at=self._served.loaded_at,
            )
            return self._served
        finally:
            self._lock.release()

    def _set_status(self, problems: Sequence[LintIssue], tokenized: int = 0) -> None:
        served = self._served
        assert served is not None
        first = problems[0] if problems else None
        self._status = KnowledgeStatus(
            ok=first is None,
            error=f"有问题的条目未加载：{first}" if first else "",
            error_file=first.path if first else None,
            error_line=first.line if first else None,
            problems=tuple(str(p) for p in problems[:50]),
            loaded_at=served.loaded_at,
            checked_at=self._clock(),
            fingerprint=served.fingerprint,
            entries=len(served.kb),
            day=served.day,
            tokenized=tokenized,
        )

    def _failed(self, exc: YxbyError) -> None:
        if self._served is None:
            raise exc
        problems: tuple[object, ...] = getattr(exc, "problems", ())
        file = line = None
        if isinstance(exc, ConfigError):
            file, line = exc.path, exc.line
        else:
            issue = next(
                (p for p in problems if isinstance(p, LintIssue) and str(p) == str(exc)), None
            )
            if issue is not None:
                file, line = issue.path, issue.line
        served = self._served
        message = (
            f"知识库更新未生效，仍在使用 {served.loaded_at:%Y-%m-%d %H:%M:%S} 加载的版本"
            f"（{len(served.kb)} 条）：{exc}"
        )
        log.error("%s", message)
        self._status = KnowledgeStatus(
            ok=False,
            error=message,
            error_file=file,
            error_line=line,
            problems=tuple(str(p) for p in problems[:50]) or (str(exc),),
            loaded_at=served.loaded_at,
            checked_at=self._clock(),
            fingerprint=served.fingerprint,
            entries=len(served.kb),
            day=served.day,
        )
