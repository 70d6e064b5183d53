"""Departments and units of the programme: canonical names, aliases and roles."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from yxby.errors import ConfigError, RoutingError
from yxby.paths import config_dir
from yxby.yamlconf import StrictModel, load_model

__all__ = ["Department", "DepartmentDirectory", "load_departments"]

DepartmentKind = Literal["职能部门", "平台公司", "运营单位", "社会服务机构"]
Role = Literal[
    "牵头部门",
    "行业主管部门",
    "招商部门",
    "楼宇园区服务",
    "个体工商户服务",
    "兜底服务",
    "包保服务",
    "市场主体数据库",
]


class Department(StrictModel):
    """One department or unit, as the seed names it."""

    name: str
    full_name: str
    kind: DepartmentKind
    aliases: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()
    source: str

    @field_validator("name", "full_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value


class _DepartmentsFile(StrictModel):
    departments: tuple[Department, ...]


class DepartmentDirectory:
    """All departments, looked up by canonical name or any alias."""

    def __init__(self, departments: tuple[Department, ...], source: str = "<memory>") -> None:
        self._departments = departments
        index: dict[str, Department] = {}
        for dept in departments:
            for name in (dept.name, dept.full_name, *dept.aliases):
                other = index.get(name)
                if other is not None and other.name != dept.name:
                    raise ConfigError(
                        f"name '{name}' is used by both {other.name} and {dept.name}",
                        path=source,
                        key="departments",
                    )
                index[name] = dept
        self._index = index

    def __iter__(self) -> Iterator[Department]:
        return iter(self._departments)

    def __len__(self) -> int:
        return len(self._departments)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip() in self._index

    @cached_property
    def names(self) -> frozenset[str]:
        """Canonical names only."""
        return frozenset(d.name for d in self._departments)

    def find(self, name: str) -> Department | None:
        """The department called *name* (canonical, full name or alias), or ``None``."""
        return self._index.get(name.strip())

    def get(self, name: str) -> Department:
        """Like :meth:`find`, but raise ``RoutingError`` for an unknown name."""
        dept = self.find(name)
        if dept is None:
            raise RoutingError(f"未知部门：{name}")
        return dept

    def canonical(self, name: str) -> str:
        """Canonical name for *name*; raise ``RoutingError`` if unknown."""
        return self.get(name).name

    def alias_map(self) -> dict[str, str]:
        """Every known name (canonical, full name, alias) → canonical name."""
        return {alias: dept.name for alias, dept in self._index.items()}

    def with_role(self, role: str) -> list[Department]:
        """Departments having *role*, in file order."""
        return [d for d in self._departments if role in d.roles]

    def mentioned_in(self, text: str) -> list[str]:
        """Canonical names of departments named in *text* (longest names matched first)."""
        found: list[str] = []
        for alias in sorted(self._index, key=len, reverse=True):
            if alias in text:
                name = self._index[alias].name
                if name not in found:
                    found.append(name)
                text = text.replace(alias, "\u0000")
        return found


def load_departments(path: Path | None = None) -> DepartmentDirectory:
    """Load ``config/departments.yaml`` (or *path*) into a directory."""
    p = path or config_dir() / "departments.yaml"
    data = load_model(p, _DepartmentsFile)
    return DepartmentDirectory(data.departments, source=str(p))
