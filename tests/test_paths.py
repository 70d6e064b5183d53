"""yxby.paths: an unusable data directory is one Chinese line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from yxby.errors import ConfigError, DataDirError
from yxby.paths import data_dir, usable_dir

YXBY = str(Path(sys.executable).with_name("yxby"))


def test_data_dir_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YXBY_DATA_DIR", str(tmp_path / "a" / "b"))
    assert data_dir() == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("file", "这是一个文件，不是目录"), ("under_file", "路径中有一段是文件而不是目录")],
)
def test_a_file_in_the_way_is_a_data_dir_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reason: str
) -> None:
    blocker = tmp_path / "plain"
    blocker.write_text("x", encoding="utf-8")
    target = blocker if kind == "file" else blocker / "data"
    monkeypatch.setenv("YXBY_DATA_DIR", str(target))
    with pytest.raises(DataDirError) as info:
        data_dir()
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == f"数据目录 {target} 不可用：{reason}（请检查 YXBY_DATA_DIR）"
    assert info.value.path == str(target) and info.value.reason == reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_a_data_dir_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataDirError, match="没有写权限"):
            usable_dir(locked)
    finally:
        locked.chmod(0o700)


def test_without_create_nothing_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YXBY_DATA_DIR", str(tmp_path / "plain"))
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    assert data_dir(create=False) == tmp_path / "plain"


def run_with_data_dir(value: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YXBY_DATA_DIR": value}
    return subprocess.run([YXBY, *args], capture_output=True, text=True, timeout=60, env=env)


def _assert_one_chinese_line(result: subprocess.CompletedProcess[str], where: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"错误：数据目录 {where} 不可用：")
    assert lines[0].endswith("（请检查 YXBY_DATA_DIR）")


def test_cli_with_data_dir_under_proc() -> None:
    _assert_one_chinese_line(run_with_data_dir("/proc/x", "ask", "你好"), "/proc/x")


def test_cli_with_data_dir_that_is_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x", encoding="utf-8")
    _assert_one_chinese_line(run_with_data_dir(str(plain), "ask", "你好"), str(plain))
    _assert_one_chinese_line(run_with_data_dir(str(plain), "kb", "test", "你好"), str(plain))


def test_cli_jieba_cache_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "jieba").write_text("x", encoding="utf-8")
    result = run_with_data_dir(str(tmp_path), "ask", "你好")
    _assert_one_chinese_line(result, str(tmp_path / "jieba"))
