"""Several workers starting at once agree on the one link secret kept in the data directory."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from handoff.links import _new_secret


def _make(path: str) -> bytes:
    return _new_secret(Path(path))


def test_workers_racing_to_create_the_secret_all_get_the_same(tmp_path: Path) -> None:
    target = tmp_path / "link-secret"
    with ProcessPoolExecutor(4) as pool:
        values = set(pool.map(_make, [str(target)] * 8))
    assert values == {target.read_bytes().strip()}
    assert len(next(iter(values))) >= 32
    assert [p.name for p in tmp_path.iterdir()] == ["link-secret"]  # no temporary left
