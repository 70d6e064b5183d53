"""The on-disk token cache: reused by a start and by ``yxby ask``, invalidated by any change
to the entries, lexicon or settings, ignored (and rebuilt) when damaged or unwritable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import knowledge
from knowledge.base import Prepared
from knowledge.cache import TokenCache
from knowledge.live import LiveKnowledge
from knowledge.settings import load_settings
from yxby.paths import PROJECT_ROOT

ENTRIES = PROJECT_ROOT / "knowledge" / "entries"
DAY = date(2026, 11, 23)
QUESTIONS = (
    "营业执照丢了怎么补办",
    "企业可以打什么热线反映问题",
    "社保怎么开户",
    "商标注册需要多长时间",
    "转人工",
    "今天天气怎么样",
)


@pytest.fixture(scope="module", autouse=True)
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped entries as they were when the module started (they may be edited)."""
    global SNAPSHOT
    SNAPSHOT = tmp_path_factory.mktemp("snapshot") / "entries"
    shutil.copytree(ENTRIES, SNAPSHOT)
    return SNAPSHOT


SNAPSHOT = ENTRIES


def build(cache: Path, entries: Path | None = None, **kw: Path) -> LiveKnowledge:
    return LiveKnowledge(entries or SNAPSHOT, today=lambda: DAY, cache_dir=cache, **kw)


def outcomes(kb: knowledge.KnowledgeBase) -> list[dict[str, object]]:
    out = []
    for q in QUESTIONS:
        d = kb.decide(q)
        out.append(
            {
                **d.as_dict(),
                "hits": [(h.entry.id, h.score, h.coverage, h.question_coverage) for h in d.hits],
            }
        )
    return out


@pytest.fixture(scope="module")
def plain(snapshot: Path) -> list[dict[str, object]]:
    """What ``knowledge.load`` (no cache at all) decides: the reference."""
    return outcomes(knowledge.load(snapshot, today=DAY))


@pytest.fixture
def copied(tmp_path: Path, snapshot: Path) -> Path:
    target = tmp_path / "entries"
    shutil.copytree(snapshot, target)
    return target


def cache_file(cache: Path) -> Path:
    (found,) = cache.glob("tokens-*.npz")
    return found


def test_a_second_start_reuses_every_entry_and_decides_the_same(
    tmp_path: Path, plain: list[dict[str, object]]
) -> None:
    first = build(tmp_path)
    assert first.status.tokenized == len(first) > 0
    second = build(tmp_path)
    assert second.status.tokenized == 0
    assert outcomes(first) == outcomes(second) == plain
    assert second.status.fingerprint == first.status.fingerprint


def test_the_cache_round_trips_prepared_entries(tmp_path: Path) -> None:
    prepared = {
        "a": Prepared(("营业执照", "补办"), (2, 1), (("营业执照", "补办"), ())),
        "b": Prepared((), (), (("热线",),)),
    }
    cache = TokenCache(tmp_path, "f" * 64)
    assert cache.write(prepared)
    assert cache.read() == prepared
    assert TokenCache(tmp_path, "e" * 64).read() == {}  # another tokenizer's file name


def test_entries_share_one_string_per_term_whether_tokenized_or_cached(tmp_path: Path) -> None:
    """Millions of equal token strings would be freed in one stall when a reload drops the
    old index; every entry's terms point at one string object per distinct term."""
    for kb in (build(tmp_path), build(tmp_path)):  # tokenized, then read from the cache
        assert kb.prepared is not None
        seen: dict[str, int] = {}
        for p in kb.prepared:
            for term in (*p.terms, *(w for words in p.asked for w in words)):
                assert seen.setdefault(term, id(term)) == id(term), term


def test_editing_one_entry_retokenizes_only_that_entry(tmp_path: Path, copied: Path) -> None:
    build(tmp_path / "cache", copied)
    path = copied / "sample-ip.yaml"
    path.write_text(path.read_text("utf-8").replace("商标注册申请", "商标注册的申请", 1), "utf-8")
    again = build(tmp_path / "cache", copied)
    assert again.status.tokenized == 1
    top = again.decide("商标注册需要多长时间").top
    assert top is not None and top.entry.title == "商标注册的申请"
    assert outcomes(again) == outcomes(knowledge.load(copied, today=DAY))


def test_a_lexicon_change_invalidates_the_cache(tmp_path: Path) -> None:
    lexicon = tmp_path / "lexicon"
    shutil.copytree(PROJECT_ROOT / "knowledge" / "lexicon", lexicon)
    first = build(tmp_path / "cache", lexicon_dir=lexicon)
    old = cache_file(tmp_path / "cache")
    with (lexicon / "stopwords.txt").open("a", encoding="utf-8") as fh:
        fh.write("补办\n")
    second = build(tmp_path / "cache", lexicon_dir=lexicon)
    assert second.status.tokenized == len(second)
    assert second.status.fingerprint != first.status.fingerprint
    assert "补办" not in second.decide("营业执照丢了怎么补办").tokens
    assert not old.exists() and cache_file(tmp_path / "cache") != old  # the stale file is gone


def test_a_settings_change_invalidates_the_cache(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    build(tmp_path / "cache", config_dir=config)
    (config / "knowledge.yaml").write_text("fields:\n  answer: 2\n", "utf-8")
    changed = build(tmp_path / "cache", config_dir=config)
    assert changed.status.tokenized == len(changed)
    reference = knowledge.load(
        SNAPSHOT, today=DAY, settings=load_settings(config / "knowledge.yaml")
    )
    assert outcomes(changed) == outcomes(reference)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "version", "bad-ids", "short-arrays"],
)
def test_a_damaged_cache_is_ignored_and_rebuilt(
    tmp_path: Path, damage: str, plain: list[dict[str, object]]
) -> None:
    build(tmp_path)
    path = cache_file(tmp_path)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays["meta"]))
        if damage == "version":
            meta["version"] = -1
        elif damage == "bad-ids":
            arrays["doc"] = arrays["doc"] - 10**6
        else:
            arrays["doc_ptr"] = arrays["doc_ptr"][:-3]
        arrays["meta"] = np.array(json.dumps(meta))
        with path.open("wb") as fh:
            np.savez(fh, **arrays)
    rebuilt = build(tmp_path)
    assert rebuilt.status.tokenized == len(rebuilt)
    assert outcomes(rebuilt) == plain
    assert build(tmp_path).status.tokenized == 0  # and written back whole


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_cache_directory_only_costs_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        assert len(build(cache)) > 0
    finally:
        cache.chmod(0o700)


def test_a_cache_path_that_is_a_file_only_costs_time(
    tmp_path: Path, plain: list[dict[str, object]]
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be", "utf-8")
    assert outcomes(build(blocker)) == plain


def test_yxby_ask_writes_and_then_reuses_the_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YXBY_")}
    env["YXBY_DATA_DIR"] = str(tmp_path / "data")
    yxby = str(Path(sys.executable).with_name("yxby"))
    cmd = [yxby, "ask", "--json", "营业执照丢了怎么补办"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=120)
    path = cache_file(tmp_path / "data" / "kb-cache")
    written = path.stat().st_mtime_ns
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert json.loads(second.stdout)["action"] == "answer"
    assert path.stat().st_mtime_ns == written  # read, not rewritten
    off = subprocess.run(
        cmd, env={**env, "YXBY_KB_CACHE": "0"}, capture_output=True, text=True, check=True
    )
    assert json.loads(off.stdout) == json.loads(first.stdout)
