import datetime as dt
import enum
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from yxby.errors import ConfigError
from yxby.yamlconf import StrictModel, describe_error, load_documents, load_model


class Limits(StrictModel):
    contact: int = Field(ge=1)
    done: int = Field(ge=1)


class Settings(StrictModel):
    name: str
    limits: Limits


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


class Every(StrictModel):
    """A model with one field of each kind the Chinese templates cover."""

    count: int = Field(0, gt=0, le=9)
    ratio: float = 0.5
    flag: bool = False
    day: dt.date | None = None
    mode: Mode = Mode.FAST
    kind: Literal["a", "b"] = "a"
    name: str = Field("x", min_length=2, max_length=4)
    items: tuple[Limits, ...] = Field((), max_length=1)
    by_name: dict[str, Limits] = Field(default_factory=dict)


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
    assert msg == f"{p}:4: 「limits.done」应为整数，现为「seven」"
    assert err.value.line == 4 and err.value.key == "limits.done"


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits:\n  contact: 2\n  done: 7\n  feedbak: 2\n")
    with pytest.raises(ConfigError) as err:
        load_model(p, Settings)
    assert str(err.value) == f"{p}:5: 未知字段「limits.feedbak」，允许的字段：contact、done"


def test_missing_key_reports_parent_line(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits:\n  contact: 2\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:2: 缺少必填字段「limits.done」$"):
        load_model(p, Settings)


def test_broken_yaml_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\nlimits: [1, 2\n  contact: 3\n")
    with pytest.raises(ConfigError, match="YAML 格式错误：") as err:
        load_model(p, Settings)
    assert err.value.line is not None and err.value.line >= 2


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "name: a\nname: b\nlimits: {contact: 1, done: 1}\n")
    with pytest.raises(ConfigError, match=r":2: 「name」字段重复（第一次出现在第 1 行）"):
        load_model(p, Settings)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="文件不存在"):
        load_model(tmp_path / "nope.yaml", Settings)


def test_documents_record_lines_of_nested_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "- id: a\n  questions:\n    - 一\n    - 二\n---\n- id: b\n")
    docs = load_documents(p)
    assert len(docs) == 2
    assert docs[0].lines[(0, "questions", 1)] == 4
    assert docs[1].lines[(0, "id")] == 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"count": 0}, "「count」应大于 0"),
        ({"count": 10}, "「count」应不大于 9"),
        ({"count": "two"}, "「count」应为整数，现为「two」"),
        ({"ratio": "half"}, "「ratio」应为数字，现为「half」"),
        ({"flag": "maybe"}, "「flag」应为 true 或 false，现为「maybe」"),
        ({"day": "2026-02-30"}, "「day」应为日期（YYYY-MM-DD），现为「2026-02-30」"),
        ({"mode": "medium"}, "「mode」应为以下之一：「fast」、「slow」"),
        ({"kind": "c"}, "「kind」应为以下之一：「a」、「b」"),
        ({"name": "x"}, "「name」至少要有 2 个字符"),
        ({"name": "abcde"}, "「name」最多只能有 4 个字符"),
        ({"name": 5}, "「name」应为文本，现为「5」"),
        ({"items": [{"contact": 1, "done": 1}] * 2}, "「items」最多只能有 1 项（现有 2 项）"),
        ({"items": "x"}, "「items」应为列表，现为「x」"),
        ({"items": [{"contact": 1, "done": 1, "more": 1}]},
         "未知字段「items.0.more」，允许的字段：contact、done"),
        ({"by_name": {"k": {"contact": 1, "done": 1, "more": 1}}},
         "未知字段「by_name.k.more」，允许的字段：contact、done"),
        ({"items": [{"contact": 1}]}, "缺少必填字段「items.0.done」"),
        ({"spare": 1}, "未知字段「spare」，允许的字段：count、ratio、flag、day、mode、kind、"
                       "name、items、by_name"),
    ],
)  # fmt: skip
def test_pydantic_errors_read_as_chinese(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Every.model_validate(data)
    (err,) = info.value.errors()
    assert describe_error(err, Every) == message


def test_a_custom_validator_keeps_its_reason(tmp_path: Path) -> None:
    from knowledge.settings import KnowledgeSettings

    p = write(tmp_path, "decision:\n  suggest_confidence: 0.9\n  answer_confidence: 0.3\n")
    with pytest.raises(ConfigError, match=r":1: 「decision」的取值有误：suggest_\w+ 不能大于"):
        load_model(p, KnowledgeSettings)


def test_common_yaml_mistakes_are_explained_in_chinese(tmp_path: Path) -> None:
    p = write(tmp_path, "name: a: b\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:1: YAML 格式错误：此处不能写“键: 值”"):
        load_model(p, Settings)
    p = write(tmp_path, "name:\n\t- a\n")
    with pytest.raises(ConfigError, match=r":2: YAML 格式错误：.*Tab 缩进"):
        load_model(p, Settings)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="无法读取"):
        load_model(tmp_path, Settings)  # a directory
