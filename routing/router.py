"""The router: which department handles a need, which rule decided it, and why.

Pure: :meth:`Router.route` takes :class:`RouteFacts` (the text and what is already known
about the enterprise) and returns a :class:`RouteDecision`. Rules, first that applies wins
(DESIGN.md “Routing order”): the assigned commissioner, the recruiting department (招商,
附件2 row 2), the 楼宇/园区 of the enterprise (row 4, where ``routing.yaml`` names its
operator), the matched knowledge entry, topic keywords, 个体工商户, the enterprise's industry,
the enterprise's 网格 (row 6), the 兜底 department. ``yxby route --explain`` and
``docs/register.md`` list the order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from routing._config import CanonicalDepartment, check_template, error_at, load_with_context
from routing.departments import DepartmentDirectory, load_departments
from routing.industries import IndustryMatch, IndustryTable, load_industries
from routing.matching import PhraseMatcher, normalize, quote
from routing.service_means import ServiceMeansTable, load_service_means
from yxby import paths
from yxby.errors import ConfigError
from yxby.yamlconf import Located, StrictModel, line_for, load_documents

__all__ = [
    "EnterpriseKind",
    "Reasons",
    "RouteDecision",
    "RouteFacts",
    "RouteRule",
    "Router",
    "RoutingConfig",
    "TopicMatch",
    "TopicRule",
    "load_router",
    "load_routing_config",
]

EnterpriseKind = Literal["企业", "个体工商户"]


class RouteRule(enum.StrEnum):
    """The rule that chose a department, in order of precedence."""

    COMMISSIONER = "commissioner"
    RECRUITED = "recruited"
    PARK = "park"
    KNOWLEDGE = "knowledge"
    TOPIC = "topic"
    INDIVIDUAL = "individual"
    INDUSTRY = "industry"
    GRID = "grid"
    FALLBACK = "fallback"

    @property
    def label(self) -> str:
        """Chinese name of the rule, for people."""
        return _LABELS[self]


_LABELS = {
    RouteRule.COMMISSIONER: "包保专员",
    RouteRule.RECRUITED: "招商部门",
    RouteRule.PARK: "楼宇园区",
    RouteRule.KNOWLEDGE: "知识库条目",
    RouteRule.TOPIC: "事项规则",
    RouteRule.INDIVIDUAL: "个体工商户",
    RouteRule.INDUSTRY: "行业主管",
    RouteRule.GRID: "网格",
    RouteRule.FALLBACK: "兜底服务",
}


@dataclass(frozen=True)
class RouteFacts:
    """Everything routing may use: the user's text and what is known about the enterprise.

    Department names may be canonical names or aliases. ``matched_*`` describe the knowledge
    entry the text matched (only when it is a confident answer about a need).
    """

    text: str = ""
    enterprise_kind: EnterpriseKind | None = None
    enterprise_industry: str | None = None
    assigned_department: str | None = None
    assigned_commissioner: str | None = None
    matched_entry_id: str | None = None
    matched_department: str | None = None
    # what the 名录库 knows (handoff.registry.route_facts): 招商部门, 楼宇/园区, 网格
    recruited_by: str | None = None
    building: str | None = None
    grid: str | None = None

    @classmethod
    def of(
        cls,
        text: str,
        registry: Mapping[str, Any] | None = None,
        *,
        matched_entry_id: str | None = None,
        matched_department: str | None = None,
    ) -> RouteFacts:
        """Facts for *text* and an enterprise's registry facts (``handoff.registry.route_facts``:
        kind, industry, commissioner, 招商部门, 楼宇/园区, 网格); unknown keys are ignored."""
        known = {f.name for f in fields(cls)} - {"text", "matched_entry_id", "matched_department"}
        given = {k: v for k, v in (registry or {}).items() if k in known}
        return cls(
            text=text,
            matched_entry_id=matched_entry_id,
            matched_department=matched_department,
            **given,
        )


@dataclass(frozen=True)
class RouteDecision:
    """The department (canonical name), the rule that chose it and a Chinese reason.

    ``evidence`` holds what the rule relied on (matched phrases, the registry industry …).
    """

    department: str
    rule: RouteRule
    reason: str
    evidence: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        """The ``yxby route --json`` contract."""
        return {"department": self.department, "rule": self.rule.value, "reason": self.reason}


_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "commissioner": frozenset({"department", "commissioner"}),
    "knowledge": frozenset({"department", "entry"}),
    "individual_text": frozenset({"department", "phrases"}),
    "individual_registry": frozenset({"department"}),
    "industry_text": frozenset({"department", "keywords", "sector", "row", "industry"}),
    "industry_registry": frozenset({"department", "name", "row", "industry"}),
    "fallback": frozenset({"department"}),
    "recruited": frozenset({"department"}),
    "park": frozenset({"department", "building"}),
    "grid": frozenset({"department", "grid"}),
    "reason": frozenset({"department", "keywords"}),  # TopicRule.reason
}


def _template(value: str, info: ValidationInfo) -> str:
    return check_template(value, _PLACEHOLDERS[info.field_name or ""])


class Reasons(StrictModel):
    """Reason templates of the fixed rules (placeholders listed in ``config/routing.yaml``)."""

    commissioner: str
    knowledge: str
    individual_text: str
    individual_registry: str
    industry_text: str
    industry_registry: str
    fallback: str
    recruited: str = "该企业由{department}招商落户，诉求由{department}精准对接服务（附件2第2项）"
    park: str = "该企业位于{building}，由{department}提供楼宇、园区精细化服务（附件2第4项）"
    grid: str = "该企业属网格“{grid}”，诉求由{department}网格化管理兜底服务（附件2第6项）"

    _check = field_validator("*")(_template)


class ParkRule(StrictModel):
    """The operator (附件2 row 4) of the 楼宇/园区 named here, as the register writes them."""

    department: CanonicalDepartment
    buildings: tuple[str, ...] = Field(min_length=1)


class TopicRule(StrictModel):
    """A need recognised by keywords, whatever the enterprise's industry."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    department: CanonicalDepartment
    keywords: tuple[str, ...] = Field(min_length=1)
    reason: str

    _check_reason = field_validator("reason")(_template)


class IndividualSettings(StrictModel):
    """How a 个体工商户 is recognised in text."""

    phrases: tuple[str, ...] = Field(min_length=1)
    negations: tuple[str, ...] = ()


class RoutingConfig(StrictModel):
    """``config/routing.yaml``."""

    fallback_department: CanonicalDepartment
    individual: IndividualSettings
    topic_self_description_factor: float = Field(default=0.5, ge=0, le=1)
    reasons: Reasons
    topics: tuple[TopicRule, ...] = ()
    # 名录库 rules: 楼宇/园区 operators, and who serves a 网格 (default for any grid; per grid)
    parks: tuple[ParkRule, ...] = ()
    grid_department: CanonicalDepartment | None = None
    grids: dict[str, CanonicalDepartment] = Field(default_factory=dict)


@dataclass(frozen=True)
class TopicMatch:
    """The topic rule a text matched, the phrases that matched it and their score."""

    rule: TopicRule
    keywords: tuple[str, ...]
    score: float


class Router:
    """Routes :class:`RouteFacts` to a department. Build with :func:`load_router`."""

    def __init__(
        self,
        config: RoutingConfig,
        departments: DepartmentDirectory,
        industries: IndustryTable,
        service_means: ServiceMeansTable,
    ) -> None:
        self.config = config
        self.departments = departments
        self.industries = industries
        self.service_means = service_means
        self._topics: PhraseMatcher[tuple[int, str]] = PhraseMatcher(
            {kw: (i, kw) for i, rule in enumerate(config.topics) for kw in rule.keywords}
        )
        self._individual = tuple(
            (p, normalize(p)) for p in config.individual.phrases if normalize(p)
        )
        self._negations = tuple(n for n in map(normalize, config.individual.negations) if n)
        self._parks = {
            normalize(b): rule.department for rule in config.parks for b in rule.buildings
        }

    def route_text(self, text: str) -> RouteDecision:
        """Route a bare text (nothing known about the enterprise)."""
        return self.route(RouteFacts(text=text))

    def route(self, facts: RouteFacts) -> RouteDecision:
        """The department for *facts*, the first rule that applies, and why.

        Never raises for any text. Raises ``RoutingError`` only when a department named in
        the facts (assigned or matched) is unknown.
        """
        reasons = self.config.reasons
        norm = normalize(facts.text or "")

        if _given(facts.assigned_department):
            dept = self.departments.canonical(str(facts.assigned_department))
            name = (facts.assigned_commissioner or "").strip()
            who = f"企业服务专员{name}"
            reason = reasons.commissioner.format(department=dept, commissioner=who)
            return RouteDecision(dept, RouteRule.COMMISSIONER, reason, (who,))

        recruited = self.recruiting_department(facts.recruited_by)
        if recruited is not None:
            reason = reasons.recruited.format(department=recruited)
            return RouteDecision(recruited, RouteRule.RECRUITED, reason, (recruited,))

        park = self.park_department(facts.building)
        if park is not None:
            building = str(facts.building).strip()
            reason = reasons.park.format(department=park, building=building)
            return RouteDecision(park, RouteRule.PARK, reason, (building,))

        if _given(facts.matched_department):
            dept = self.departments.canonical(str(facts.matched_department))
            entry_id = (facts.matched_entry_id or "").strip()
            entry = quote([entry_id]) if entry_id else ""
            reason = reasons.knowledge.format(department=dept, entry=entry)
            return RouteDecision(dept, RouteRule.KNOWLEDGE, reason, (entry_id,) if entry_id else ())

        topic = self.match_topic(facts.text)
        if topic is not None:
            dept = topic.rule.department
            reason = topic.rule.reason.format(department=dept, keywords=quote(topic.keywords))
            return RouteDecision(dept, RouteRule.TOPIC, reason, topic.keywords)

        individual = self.service_means.individual_department
        if facts.enterprise_kind == "个体工商户":
            reason = reasons.individual_registry.format(department=individual)
            return RouteDecision(individual, RouteRule.INDIVIDUAL, reason, ("个体工商户",))
        if facts.enterprise_kind != "企业":
            phrases = self.individual_phrases(facts.text)
            if phrases:
                reason = reasons.individual_text.format(
                    department=individual, phrases=quote(phrases[:1])
                )
                return RouteDecision(individual, RouteRule.INDIVIDUAL, reason, phrases)

        registered = (facts.enterprise_industry or "").strip()
        match = self.industries.lookup(registered) if registered else None
        if match is not None:
            reason = reasons.industry_registry.format(
                department=match.department,
                name=registered,
                row=match.row,
                industry=match.industry,
            )
            return RouteDecision(match.department, RouteRule.INDUSTRY, reason, (registered,))
        match = self.industries.recognise(facts.text) if norm else None
        if match is not None:
            return self._industry_from_text(match)

        grid = (facts.grid or "").strip()
        grid_dept = self.config.grids.get(grid) or self.config.grid_department
        if grid and grid_dept:
            reason = reasons.grid.format(department=grid_dept, grid=grid)
            return RouteDecision(grid_dept, RouteRule.GRID, reason, (grid,))

        dept = self.config.fallback_department
        return RouteDecision(dept, RouteRule.FALLBACK, reasons.fallback.format(department=dept))

    def recruiting_department(self, name: str | None) -> str | None:
        """The canonical 招商部门 (附件2 row 2) *name* means, or ``None`` (unknown or not one)."""
        if not _given(name):
            return None
        found = self.departments.find(str(name).strip())
        if found is None or found.name not in self.service_means.recruiting_departments:
            return None
        return found.name

    def park_department(self, building: str | None) -> str | None:
        """The operator ``routing.yaml`` names for the 楼宇/园区 *building*, or ``None``."""
        if not _given(building):
            return None
        return self._parks.get(normalize(str(building)))

    def match_topic(self, text: str) -> TopicMatch | None:
        """The topic rule *text* raises, or ``None``. Most hits wins; ties go to file order."""
        norm = normalize(text or "")
        hits = self._topics.find(norm) if norm else []
        if not hits:
            return None
        parts = self.industries.clauses(norm)
        factor = self.config.topic_self_description_factor
        scores: dict[int, dict[str, float]] = {}
        for hit in hits:
            index, phrase = hit.value
            mine = any(hit.start in c and c.self_description for c in parts)
            value = factor if mine else 1.0
            found = scores.setdefault(index, {})
            found[phrase] = max(found.get(phrase, 0.0), value)
        index = max(scores, key=lambda i: (sum(scores[i].values()), -i))
        total = sum(scores[index].values())
        if total <= 0:
            return None
        return TopicMatch(self.config.topics[index], tuple(scores[index]), total)

    def individual_phrases(self, text: str) -> tuple[str, ...]:
        """Phrases by which *text* says its writer is a 个体工商户, in config order.

        Every listed phrase is looked for (not longest-first), so “我是个体户” reports 个体户
        first; an occurrence right after a negation (“不是个体户”) does not count.
        """
        norm = normalize(text or "")
        found: list[str] = []
        for phrase, key in self._individual:
            start = norm.find(key)
            while start != -1:
                if not any(norm.endswith(n, 0, start) for n in self._negations):
                    found.append(phrase)
                    break
                start = norm.find(key, start + 1)
        return tuple(found)

    def _industry_from_text(self, match: IndustryMatch) -> RouteDecision:
        reason = self.config.reasons.industry_text.format(
            department=match.department,
            keywords=quote(match.keywords),
            sector=match.sector,
            row=match.row,
            industry=match.industry,
        )
        return RouteDecision(match.department, RouteRule.INDUSTRY, reason, match.keywords)


def _given(value: str | None) -> bool:
    return bool(value and value.strip())


def _check_topics(config: RoutingConfig, path: Path, doc: Located) -> None:
    seen: dict[str, str] = {}
    ids: set[str] = set()
    for i, rule in enumerate(config.topics):
        if rule.id in ids:
            raise error_at(f"topic id '{rule.id}' appears twice", path, doc, ("topics", i, "id"))
        ids.add(rule.id)
        for k, phrase in enumerate(rule.keywords):
            key = normalize(phrase)
            loc = ("topics", i, "keywords", k)
            if not key:
                raise error_at("keyword must not be empty", path, doc, loc)
            if key in seen:
                raise error_at(
                    f"keyword '{phrase}' is already used by topic '{seen[key]}'", path, doc, loc
                )
            seen[key] = rule.id


def load_routing_config(
    path: Path | None = None, departments: DepartmentDirectory | None = None
) -> RoutingConfig:
    """Load ``config/routing.yaml`` (or *path*); raise ``ConfigError`` naming the bad key."""
    p = path or paths.config_dir() / "routing.yaml"
    config, doc = load_with_context(p, RoutingConfig, departments or load_departments())
    _check_topics(config, p, doc)
    return config


def load_router(config_dir: Path | None = None) -> Router:
    """A router from ``departments.yaml``, ``industries.yaml``, ``service_means.yaml`` and
    ``routing.yaml`` in *config_dir* (default: the project's config directory)."""
    base = config_dir or paths.config_dir()
    departments = load_departments(base / "departments.yaml")
    industries = load_industries(base / "industries.yaml", departments)
    means = load_service_means(base / "service_means.yaml", departments)
    config = load_routing_config(base / "routing.yaml", departments)

    if config.fallback_department not in means.fallback_departments:
        raise _cross_error(
            base / "routing.yaml",
            ("fallback_department",),
            f"'{config.fallback_department}' is not a 兜底 department of service_means.yaml "
            f"(row 6: {'、'.join(means.fallback_departments)})",
        )
    for i, park in enumerate(config.parks):
        if park.department not in means.by_key("park").departments:
            raise _cross_error(
                base / "routing.yaml",
                ("parks", i, "department"),
                f"'{park.department}' is not a 楼宇/园区 department of service_means.yaml "
                f"(row 4: {'、'.join(means.by_key('park').departments)})",
            )
    grid_departments = [("grid_department",), *(("grids", g) for g in config.grids)]
    for loc in grid_departments:
        dept = config.grid_department if len(loc) == 1 else config.grids[str(loc[1])]
        if dept is not None and dept not in means.fallback_departments:
            raise _cross_error(
                base / "routing.yaml",
                loc,
                f"'{dept}' is not a 网格/兜底 department of service_means.yaml "
                f"(row 6: {'、'.join(means.fallback_departments)})",
            )
    for i, row in enumerate(industries.rows):
        if row.department not in means.industry_departments:
            raise _cross_error(
                base / "industries.yaml",
                ("industries", i, "department"),
                f"'{row.department}' is not an industry department of service_means.yaml "
                f"(row 3: {'、'.join(means.industry_departments)})",
            )
    return Router(config, departments, industries, means)


def _cross_error(path: Path, loc: tuple[str | int, ...], message: str) -> ConfigError:
    lines = load_documents(path)[0].lines
    return ConfigError(
        message, path=str(path), line=line_for(lines, loc), key=".".join(map(str, loc))
    )
