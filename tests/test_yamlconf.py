from pathlib import Path

import pytest
from pydantic import Field

from yxby.errors import ConfigError
from yxby.yamlconf import StrictModel, load_documents, load_model


class Limits(StrictModel):
    contact: int = Field(ge=1)
    done: int = Field(ge=1)


class Settings(StrictModel):
    name: str
    limits: Limits


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "settings.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_valid_file_loads_into_model(tmp_path: Path) -> None:
    p = write(tmp_path, "name: 有需必应\nlimits:\n  contact: 2\n  done: 7\n")
    s = load_model(p, Settings)
    assert s.limits.done == 7 and s.name == "有需必应"


def test_bad_value_names_file_line_key_and_expectation(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits:\n  contact: 2\n  done: seven\n")
    with pytest.raises(ConfigError) as err:
        load_model(p, Settings)
    msg = str(err.value)
    assert f"{p}:4" in msg
    assert "limits.done" in msg
    assert "integer" in msg
    assert err.value.line == 4


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits:\n  contact: 2\n  done: 7\n  feedbak: 2\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:5.*limits.feedbak.*unknown key"):
        load_model(p, Settings)


def test_missing_key_reports_parent_line(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits:\n  contact: 2\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:2.*limits.done.*required"):
        load_model(p, Settings)


def test_broken_yaml_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits: [1, 2\n  contact: 3\n")
    with pytest.raises(ConfigError, match="broken YAML") as err:
        load_model(p, Settings)
    assert err.value.line is not None and err.value.line >= 2


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "name: a\nname: b\nlimits: {contact: 1, done: 1}\n")
    with pytest.raises(ConfigError, match=r":2: 'name': duplicate key \(first at line 1\)"):
        load_model(p, Settings)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_model(tmp_path / "nope.yaml", Settings)


def test_documents_record_lines_of_nested_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "- id: a\n  questions:\n    - 一\n    - 二\n---\n- id: b\n")
    docs = load_documents(p)
    assert len(docs) == 2
    assert docs[0].lines[(0, "questions", 1)] == 4
    assert docs[1].lines[(0, "id")] == 6
