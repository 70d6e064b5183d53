"""The six service means (服务手段) of 附件2 and their responsible departments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator

from routing._config import CanonicalDepartment, error_at, load_with_context, non_empty
from routing.departments import DepartmentDirectory, load_departments
from yxby.paths import config_dir
from yxby.yamlconf import Located, StrictModel

__all__ = ["ServiceKey", "ServiceMeans", "ServiceMeansTable", "load_service_means"]

ServiceKey = Literal["baobao", "recruited", "industry", "park", "individual", "fallback"]


class ServiceMeans(StrictModel):
    """One row of 附件2: a service means and the departments responsible for it."""

    row: int = Field(ge=1)
    key: ServiceKey
    means: str = Field(min_length=1)
    departments: tuple[CanonicalDepartment, ...] = Field(min_length=1)
    others: str | None = None
    as_written: str = Field(min_length=1)


class _ServiceMeansFile(StrictModel):
    service_means: tuple[ServiceMeans, ...]

    _rows = field_validator("service_means")(non_empty)


class ServiceMeansTable:
    """附件2, looked up by row or by key."""

    def __init__(self, rows: tuple[ServiceMeans, ...]) -> None:
        self._rows = rows
        self._by_key = {r.key: r for r in rows}

    def __iter__(self) -> Iterator[ServiceMeans]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, number: int) -> ServiceMeans:
        """The row numbered *number*; ``KeyError`` if there is none."""
        for r in self._rows:
            if r.row == number:
                return r
        raise KeyError(number)

    def by_key(self, key: ServiceKey) -> ServiceMeans:
        """The row for *key* (every key is present in a loaded table)."""
        return self._by_key[key]

    @property
    def recruiting_departments(self) -> tuple[str, ...]:
        """各招商部门 (row 2): who serves the enterprises they recruited."""
        return self.by_key("recruited").departments

    @property
    def industry_departments(self) -> tuple[str, ...]:
        """各行业主管部门 (row 3)."""
        return self.by_key("industry").departments

    @property
    def individual_department(self) -> str:
        """Who serves 个体工商户 (row 5)."""
        return self.by_key("individual").departments[0]

    @property
    def fallback_departments(self) -> tuple[str, ...]:
        """Who provides the 兜底 service (row 6)."""
        return self.by_key("fallback").departments

    def means_of(self, department: str) -> list[ServiceMeans]:
        """Rows naming *department* (canonical name) as responsible."""
        return [r for r in self._rows if department in r.departments]


def _check(
    data: _ServiceMeansFile, path: Path, doc: Located, directory: DepartmentDirectory
) -> None:
    seen_rows: set[int] = set()
    seen_keys: set[str] = set()
    for i, means in enumerate(data.service_means):
        if means.row in seen_rows:
            raise error_at(f"row {means.row} appears twice", path, doc, ("service_means", i, "row"))
        if means.key in seen_keys:
            raise error_at(
                f"key '{means.key}' appears twice", path, doc, ("service_means", i, "key")
            )
        seen_rows.add(means.row)
        seen_keys.add(means.key)
        written = set(directory.mentioned_in(means.as_written))
        if written != set(means.departments):
            raise error_at(
                f"departments {sorted(means.departments)} do not match as_written "
                f"(which names {sorted(written)})",
                path,
                doc,
                ("service_means", i, "departments"),
            )
    missing = [k for k in get_args(ServiceKey) if k not in seen_keys]
    if missing:
        raise error_at(
            f"missing rows for keys: {', '.join(missing)}", path, doc, ("service_means",)
        )


def load_service_means(
    path: Path | None = None, departments: DepartmentDirectory | None = None
) -> ServiceMeansTable:
    """Load ``config/service_means.yaml`` (or *path*); raise ``ConfigError`` naming the bad key."""
    p = path or config_dir() / "service_means.yaml"
    directory = departments or load_departments()
    data, doc = load_with_context(p, _ServiceMeansFile, directory)
    _check(data, p, doc, directory)
    return ServiceMeansTable(data.service_means)
