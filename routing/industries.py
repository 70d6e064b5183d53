"""Industries and their responsible departments (附件3), recognised in free text or by name.

``config/gbt4754.yaml`` adds the GB/T 4754-2017 国民经济行业分类 (门类 A–T, 大类 01–97) and
the 附件3 category of each: :meth:`IndustryTable.classify` takes a register's 行业 cell (a
code such as ``C``, ``36``, ``3611``, ``C3611`` or a name) and returns its code, name and row.

``config/industries.yaml`` holds the annex row by row with the keywords that recognise each
industry. :meth:`IndustryTable.recognise` scores free text (longest phrase first, words in a
self-description count more) and :meth:`IndustryTable.lookup` resolves an industry name as
an enterprise registry stores it (工业, 住宿餐饮业, 制造业, or a whole 附件3 row label).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from routing._config import CanonicalDepartment, error_at, load_with_context, non_empty
from routing.departments import DepartmentDirectory, load_departments
from routing.matching import Clause, PhraseMatcher, clauses, normalize
from yxby.paths import config_dir
from yxby.yamlconf import Located, StrictModel

__all__ = [
    "IndustryCode",
    "IndustryMatch",
    "IndustryRow",
    "IndustryTable",
    "Recognition",
    "Sector",
    "UnknownIndustry",
    "load_industries",
]

Weight = Annotated[int, Field(ge=1, le=3)]


class Recognition(StrictModel):
    """How free text is scored (see the comments in ``config/industries.yaml``)."""

    min_score: float = Field(default=2.0, gt=0)
    self_description_boost: float = Field(default=2.0, ge=1)
    self_description_markers: tuple[str, ...] = ()
    head_bonus: float = Field(default=1.0, ge=0)
    head_suffixes: tuple[str, ...] = ()
    neutral: tuple[str, ...] = ()


class Sector(StrictModel):
    """One industry named in an annex row, with its registry aliases and text keywords."""

    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    keywords: dict[str, Weight] = Field(min_length=1)


class IndustryRow(StrictModel):
    """One row of 附件3: 行业类型 as the seed writes it and the responsible department."""

    row: int = Field(ge=1)
    industry: str = Field(min_length=1)
    department: CanonicalDepartment
    sectors: tuple[Sector, ...]

    _sectors = field_validator("sectors")(non_empty)


class GbSection(StrictModel):
    """One GB/T 4754 门类 with its 大类; a 大类 is a name or ``[name, 附件3 sector]``."""

    code: str = Field(pattern=r"^[A-T]$")
    name: str = Field(min_length=1)
    sector: str | None
    divisions: dict[str, str | tuple[str, str | None]] = Field(min_length=1)


class _GbFile(StrictModel):
    sections: tuple[GbSection, ...]

    _sections = field_validator("sections")(non_empty)


class UnknownIndustry(ValueError):
    """A 行业 cell that is neither a GB/T 4754 code or name nor a 附件3 industry (Chinese)."""


@dataclass(frozen=True)
class IndustryCode:
    """What a register's 行业 cell means: GB/T 4754 code (``None`` for a bare 附件3 name),
    the industry's name, and its 附件3 row (``None`` when 附件3 names no department)."""

    code: str | None
    name: str
    match: IndustryMatch | None


class _IndustriesFile(StrictModel):
    recognition: Recognition = Recognition()
    industries: tuple[IndustryRow, ...]

    _industries = field_validator("industries")(non_empty)


@dataclass(frozen=True)
class IndustryMatch:
    """An industry found for a text or a registry name.

    ``keywords`` are the phrases that matched (strongest first) or, for an exact registry
    name, the name itself; ``score`` is the text score (0 for an exact name).
    """

    row: int
    industry: str
    sector: str
    department: str
    keywords: tuple[str, ...]
    score: float
    source: Literal["text", "name"] = "text"

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "row": self.row,
            "industry": self.industry,
            "sector": self.sector,
            "department": self.department,
            "keywords": list(self.keywords),
            "score": self.score,
            "source": self.source,
        }


@dataclass(frozen=True)
class _Keyword:
    phrase: str
    row: IndustryRow
    sector: str
    weight: int


@dataclass
class _Tally:
    row: IndustryRow
    values: dict[str, float] = field(default_factory=dict)  # keyword -> best value
    weights: dict[str, int] = field(default_factory=dict)
    sectors: dict[str, float] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    last: int = -1

    @property
    def score(self) -> float:
        return sum(self.values.values())

    def rank(self) -> tuple[float, int, int, int]:
        # higher score, then stronger single word, then the later word (the head of a
        # Chinese noun phrase comes last: 建材贸易公司 is trade), then the earlier row
        return (self.score, max(self.weights.values()), self.last, -self.row.row)


class IndustryTable:
    """All 附件3 rows, with text recognition and name lookup."""

    def __init__(
        self,
        rows: tuple[IndustryRow, ...],
        recognition: Recognition | None = None,
        departments: DepartmentDirectory | None = None,
        gb: tuple[GbSection, ...] = (),
    ) -> None:
        self._rows = rows
        self.recognition = recognition or Recognition()
        keywords: dict[str, _Keyword | None] = {}
        names: dict[str, tuple[IndustryRow, str]] = {}
        for row in rows:
            label_sector = row.industry if len(row.sectors) > 1 else row.sectors[0].name
            names.setdefault(normalize(row.industry), (row, label_sector))
            for sector in row.sectors:
                for name in (sector.name, *sector.aliases):
                    names.setdefault(normalize(name), (row, sector.name))
                for phrase, weight in sector.keywords.items():
                    keywords[phrase] = _Keyword(phrase, row, sector.name, weight)
        neutral: list[str] = list(self.recognition.neutral)
        if departments is not None:
            for dept in departments:
                neutral.extend((dept.name, dept.full_name, *dept.aliases))
        table: dict[str, _Keyword | None] = {p: None for p in neutral}
        table.update(keywords)  # a keyword is never neutral
        self._matcher: PhraseMatcher[_Keyword] = PhraseMatcher(table)
        self._names = names
        self._suffixes = tuple(normalize(s) for s in self.recognition.head_suffixes)
        sectors = {sector.name: row for row in rows for sector in row.sectors}
        self._gb_codes: dict[str, tuple[str, str, str | None]] = {}  # code → section, name, sector
        self._gb_names: dict[str, str] = {}  # normalised name → code
        for section in gb:
            self._gb_codes[section.code] = (section.code, section.name, section.sector)
            self._gb_names.setdefault(normalize(section.name), section.code)
            for code, spec in section.divisions.items():
                division, part = (spec, section.sector) if isinstance(spec, str) else spec
                self._gb_codes[code] = (section.code, division, part)
                self._gb_names.setdefault(normalize(division), code)
        self._gb_sectors = sectors

    def __iter__(self) -> Iterator[IndustryRow]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> tuple[IndustryRow, ...]:
        """The rows in file order."""
        return self._rows

    @property
    def departments(self) -> frozenset[str]:
        """Every department responsible for a row."""
        return frozenset(r.department for r in self._rows)

    def row(self, number: int) -> IndustryRow:
        """The row numbered *number*; ``KeyError`` if there is none."""
        for r in self._rows:
            if r.row == number:
                return r
        raise KeyError(number)

    def clauses(self, text: str) -> list[Clause]:
        """Clauses of normalised *text*, self-descriptions flagged (shared with topic rules)."""
        return clauses(text, self.recognition.self_description_markers)

    def recognise(self, text: str) -> IndustryMatch | None:
        """The industry *text* describes, or ``None`` when no row reaches ``min_score``."""
        norm = normalize(text or "")
        hits = self._matcher.find(norm) if norm else []
        if not hits:
            return None
        rec = self.recognition
        parts = self.clauses(norm)
        tallies: dict[int, _Tally] = {}
        for hit in hits:
            kw = hit.value
            boost = rec.self_description_boost if _in_self_description(parts, hit.start) else 1.0
            head = rec.head_bonus if any(norm.startswith(s, hit.end) for s in self._suffixes) else 0
            value = (kw.weight + head) * boost
            tally = tallies.setdefault(kw.row.row, _Tally(kw.row))
            if value > tally.values.get(kw.phrase, 0.0):
                tally.sectors[kw.sector] = (
                    tally.sectors.get(kw.sector, 0.0) - tally.values.get(kw.phrase, 0.0) + value
                )
                tally.values[kw.phrase] = value
            tally.weights[kw.phrase] = kw.weight
            tally.first.setdefault(kw.phrase, hit.start)
            tally.last = max(tally.last, hit.start)
        best = max(tallies.values(), key=_Tally.rank)
        if best.score < rec.min_score:
            return None
        sector = max(best.sectors, key=lambda s: best.sectors[s])
        ordered = sorted(best.values, key=lambda p: (-best.values[p], best.first[p]))
        return IndustryMatch(
            row=best.row.row,
            industry=best.row.industry,
            sector=sector,
            department=best.row.department,
            keywords=tuple(ordered),
            score=best.score,
        )

    def classify(self, value: str) -> IndustryCode:
        """A register's 行业 cell as code, name and 附件3 row; ``UnknownIndustry`` otherwise.

        Codes: a 门类 letter, a 2–4 digit 大类/中类/小类 code (placed by its 大类), optionally
        led by its 门类 letter (``C3611``). Names: a GB/T 4754 门类 or 大类 name, or a 附件3
        industry name or alias (as ``lookup`` knows them, but never guessed from words).
        """
        text = normalize(value or "").upper().replace(" ", "")
        if not text:
            raise UnknownIndustry("行业为空")
        code = re.fullmatch(r"([A-T])?(\d{2,4})?", text)
        if code and (code.group(1) or code.group(2)):
            letter, digits = code.group(1), code.group(2)
            key = digits[:2] if digits else letter or ""
            found = self._gb_codes.get(key)
            if found is None or (letter and found[0] != letter):
                raise UnknownIndustry(
                    f"未知的国民经济行业代码「{value.strip()}」（GB/T 4754-2017）"
                )
            return IndustryCode(digits or key, found[1], self._gb_match(found[1], found[2]))
        by_gb = self._gb_names.get(normalize(value))
        if by_gb is not None:
            _section, name, sector = self._gb_codes[by_gb]
            return IndustryCode(by_gb, name, self._gb_match(name, sector))
        key = normalize(value)
        for candidate in (key, key + "业", key.removesuffix("业")):
            named = self._names.get(candidate)
            if named is not None:
                return IndustryCode(None, value.strip(), self.lookup(value))
        raise UnknownIndustry(
            f"未知的行业「{value.strip()}」（应为国民经济行业分类代码或名称，或附件3的行业）"
        )

    def _gb_match(self, name: str, sector: str | None) -> IndustryMatch | None:
        if sector is None:
            return None
        row = self._gb_sectors[sector]
        return IndustryMatch(
            row=row.row,
            industry=row.industry,
            sector=sector,
            department=row.department,
            keywords=(name,),
            score=0.0,
            source="name",
        )

    def lookup(self, name: str) -> IndustryMatch | None:
        """The row for an industry *name* as a registry stores it, or ``None``.

        Exact names (a sector, an alias or a whole row label; with or without the final 业)
        are tried first; otherwise the name is recognised like text.
        """
        key = normalize(name or "")
        if not key:
            return None
        for candidate in (key, key + "业", key.removesuffix("业")):
            found = self._names.get(candidate)
            if found is not None:
                row, sector = found
                return IndustryMatch(
                    row=row.row,
                    industry=row.industry,
                    sector=sector,
                    department=row.department,
                    keywords=(name.strip(),),
                    score=0.0,
                    source="name",
                )
        by_gb = self._gb_names.get(key)
        if by_gb is not None:
            found_gb = self._gb_match(name.strip(), self._gb_codes[by_gb][2])
            if found_gb is not None:
                return found_gb
        match = self.recognise(name)
        return replace(match, source="name") if match else None


def _in_self_description(parts: list[Clause], position: int) -> bool:
    return any(position in c and c.self_description for c in parts)


def _check(data: _IndustriesFile, path: Path, doc: Located) -> None:
    """Cross-row checks pydantic cannot do: unique rows, keywords and names."""
    rows: dict[int, int] = {}
    keywords: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, row in enumerate(data.industries):
        if row.row in rows:
            raise error_at(
                f"row {row.row} appears twice (also industries.{rows[row.row]})",
                path,
                doc,
                ("industries", i, "row"),
            )
        rows[row.row] = i
        label = normalize(row.industry)
        if names.get(label, row.row) != row.row:
            raise error_at(
                f"'{row.industry}' already names row {names[label]}",
                path,
                doc,
                ("industries", i, "industry"),
            )
        names[label] = row.row
        for j, sector in enumerate(row.sectors):
            here: tuple[str | int, ...] = ("industries", i, "sectors", j)
            labelled = [(sector.name, (*here, "name"))]
            labelled += [(a, (*here, "aliases", k)) for k, a in enumerate(sector.aliases)]
            for name, loc in labelled:
                key = normalize(name)
                if names.get(key, row.row) != row.row:
                    raise error_at(f"'{name}' already names row {names[key]}", path, doc, loc)
                names[key] = row.row
            for phrase in sector.keywords:
                key = normalize(phrase)
                loc = (*here, "keywords", phrase)
                if not key:
                    raise error_at("keyword must not be empty", path, doc, loc)
                if key in keywords:
                    raise error_at(
                        f"keyword '{phrase}' is already used by row {keywords[key]}",
                        path,
                        doc,
                        loc,
                    )
                keywords[key] = row.row
    for n, phrase in enumerate(data.recognition.neutral):
        if normalize(phrase) in keywords:
            raise error_at(
                f"neutral phrase '{phrase}' is also a keyword of row {keywords[normalize(phrase)]}",
                path,
                doc,
                ("recognition", "neutral", n),
            )


def _load_gb(path: Path, data: _IndustriesFile) -> tuple[GbSection, ...]:
    gb, doc = load_with_context(path, _GbFile, None)
    sectors = {sector.name for row in data.industries for sector in row.sectors}
    seen: set[str] = set()
    for i, section in enumerate(gb.sections):
        if section.code in seen:
            raise error_at(f"门类 {section.code} appears twice", path, doc, ("sections", i))
        seen.add(section.code)
        if section.sector is not None and section.sector not in sectors:
            raise error_at(
                f"unknown 附件3 sector '{section.sector}' (industries.yaml sectors)",
                path,
                doc,
                ("sections", i, "sector"),
            )
        for code, spec in section.divisions.items():
            loc = ("sections", i, "divisions", code)
            if not re.fullmatch(r"\d{2}", code) or code in seen:
                raise error_at(f"大类 code '{code}' is not two new digits", path, doc, loc)
            seen.add(code)
            sector = section.sector if isinstance(spec, str) else spec[1]
            if sector is not None and sector not in sectors:
                raise error_at(f"unknown 附件3 sector '{sector}'", path, doc, loc)
    return gb.sections


def load_industries(
    path: Path | None = None, departments: DepartmentDirectory | None = None
) -> IndustryTable:
    """Load ``config/industries.yaml`` (or *path*); departments must be canonical names.

    The GB/T 4754 table is ``gbt4754.yaml`` next to it (none when there is no such file).
    Raises ``ConfigError`` naming file, line and key.
    """
    p = path or config_dir() / "industries.yaml"
    directory = departments or load_departments()
    data, doc = load_with_context(p, _IndustriesFile, directory)
    _check(data, p, doc)
    gb_path = p.parent / "gbt4754.yaml"
    gb = _load_gb(gb_path, data) if gb_path.is_file() else ()
    return IndustryTable(data.industries, data.recognition, directory, gb)
