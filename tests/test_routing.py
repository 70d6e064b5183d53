"""The router: every rule, its precedence and reason; service means (附件2); routing.yaml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from routing import RouteDecision, RouteFacts, Router, RouteRule, load_router
from routing.service_means import load_service_means
from yxby.errors import ConfigError, RoutingError
from yxby.paths import config_dir


@pytest.fixture(scope="module")
def router() -> Router:
    return load_router()


def route(router: Router, text: str = "", **facts: str) -> RouteDecision:
    return router.route(RouteFacts(text=text, **facts))  # type: ignore[arg-type]


# The programme's own cases: text only, each to the department the annexes name.
REQUIRED = [
    ("我们是一家电子元器件生产企业，想咨询工业企业的扶持政策", "工信局", RouteRule.INDUSTRY),
    ("我们是矿产开采企业，有事项需要行业主管部门协调", "工信局", RouteRule.INDUSTRY),
    ("我们是一家电力供应公司，想对接主管部门", "工信局", RouteRule.INDUSTRY),
    ("我们经营一家宾馆，想了解行业主管部门", "商务局", RouteRule.INDUSTRY),
    ("我们是一家大宗商品贸易公司，想反映经营困难", "商务局", RouteRule.INDUSTRY),
    ("我们是一家小额贷款公司，需要金融监管方面的指导", "财政局", RouteRule.INDUSTRY),
    ("我们是一家建筑设计和工程总承包企业", "规建局", RouteRule.INDUSTRY),
    ("我们公司从事道路货物运输，遇到困难", "规建局", RouteRule.INDUSTRY),
    ("我们是物业和房地产经纪公司，有问题想咨询", "规建局", RouteRule.INDUSTRY),
    ("我们开了一家社区卫生服务站，需要主管部门指导", "社发局", RouteRule.INDUSTRY),
    (
        "我们是研发生物医药新技术的高新技术企业，想对接科技创新方面的服务",
        "科技局",
        RouteRule.INDUSTRY,
    ),
    ("我们是一家出版和文化传媒公司", "文教局", RouteRule.INDUSTRY),
    ("我们经营一家游乐场，属于娱乐业", "文教局", RouteRule.INDUSTRY),
    ("我们公司承接水利工程的运营维护", "城环局", RouteRule.INDUSTRY),
    ("我们是一家环境监测和固废处置企业", "城环局", RouteRule.INDUSTRY),
    ("我们是一家人力资源服务公司", "发改局", RouteRule.INDUSTRY),
    ("我是个体工商户，开了一家理发店，有问题想咨询", "市场监管局", RouteRule.INDIVIDUAL),
    ("有个事情想找政府帮忙", "政务办", RouteRule.FALLBACK),
]

# More ways enterprises describe themselves (industry rule, text only).
SELF_DESCRIPTIONS = [
    ("我们厂是做注塑加工的，订单下滑想找主管部门", "工信局"),
    ("我们是一家汽车零部件制造企业，想了解扶持政策", "工信局"),
    ("我们是一家光伏发电企业，并网遇到困难", "工信局"),
    ("我们是一家燃气公司，有事项需要协调", "工信局"),
    ("我们是一家煤矿，想对接主管部门", "工信局"),
    ("我们公司主营钢材批发和零售，想反映问题", "商务局"),
    ("我们开了一家火锅店，想问问有没有扶持政策", "商务局"),
    ("我们是一家跨境电商企业，想对接主管部门", "商务局"),
    ("我们是一家酒店管理公司", "商务局"),
    ("我们在保税区开了一家超市，生意不好", "商务局"),
    ("我们是一家建材贸易公司，想申请贷款", "商务局"),
    ("我们在工业园区开了一家餐馆", "商务局"),
    ("我们是一家融资租赁公司，想对接主管部门", "财政局"),
    ("我们是一家商业保理企业，业务上有问题", "财政局"),
    ("我们是证券公司在保税区的营业部", "财政局"),
    ("我们是一家国际货运代理公司，做集装箱物流", "规建局"),
    ("我们是一家仓储物流企业，园区道路拥堵", "规建局"),
    ("我们是一家装饰装修公司，想了解行业政策", "规建局"),
    ("我们公司做房地产开发，有问题反映", "规建局"),
    ("我们是一家民营医院，需要行业指导", "社发局"),
    ("我们开办了一家养老院，想了解补贴", "社发局"),
    ("我们是一家从事人工智能技术研发的科技公司", "科技局"),
    ("我们是一所民办培训学校，想对接主管部门", "文教局"),
    ("我们经营一家健身房，想了解体育产业政策", "文教局"),
    ("我们是一家KTV，想咨询行业管理", "文教局"),
    ("我们是一家影视制作公司，需要帮助", "文教局"),
    ("我们公司负责园区的绿化养护和环卫保洁", "城环局"),
    ("我们是污水处理厂，运营中有困难", "城环局"),
    ("我们是一家管理咨询公司，想反映问题", "发改局"),
    ("我们是家政服务公司，想了解扶持", "发改局"),
    ("我们是一家律师事务所，想对接相关部门", "发改局"),
    ("我们是一家软件开发公司，想对接主管部门", "发改局"),
]

# The need decides, whatever the industry.
TOPICS = [
    ("我们是一家宾馆，想办理营业执照变更", "市场监管局"),
    ("我们企业的营业执照丢了怎么办", "市场监管局"),
    ("我们公司想申请商标注册", "市场监管局"),
    ("我们经营一家餐厅，员工社保怎么缴纳", "社发局"),
    ("我们是生产企业，需要招聘技术工人", "社发局"),
    ("我们是建筑企业，施工许可办理遇到困难", "规建局"),
    ("我们是化工企业，环评审批需要多久", "城环局"),
    ("我们是制造企业，想申报高新技术企业认定", "科技局"),
    ("想申请专精特新企业认定", "工信局"),
    ("我们是一家贸易公司，想了解政府采购", "财政局"),
    ("孩子入学问题想咨询", "文教局"),
]


@pytest.mark.parametrize(("text", "department", "rule"), REQUIRED)
def test_programme_cases(router: Router, text: str, department: str, rule: RouteRule) -> None:
    decision = router.route_text(text)
    assert (decision.department, decision.rule) == (department, rule)


@pytest.mark.parametrize(("text", "department"), SELF_DESCRIPTIONS)
def test_more_self_descriptions(router: Router, text: str, department: str) -> None:
    decision = router.route_text(text)
    assert (decision.department, decision.rule) == (department, RouteRule.INDUSTRY)


@pytest.mark.parametrize(("text", "department"), TOPICS)
def test_topic_rules_decide_by_need(router: Router, text: str, department: str) -> None:
    decision = router.route_text(text)
    assert (decision.department, decision.rule) == (department, RouteRule.TOPIC)


def test_no_topic_rule_fires_on_self_descriptions(router: Router) -> None:
    texts = [t for t, _, rule in REQUIRED if rule is RouteRule.INDUSTRY]
    texts += [t for t, _ in SELF_DESCRIPTIONS]
    assert [t for t in texts if router.match_topic(t) is not None] == []


# ------------------------------------------------------------------------ precedence

ALL_FACTS = {
    "assigned_department": "商务局",
    "assigned_commissioner": "张三",
    "matched_entry_id": "company-setup",
    "matched_department": "市场监管局",
    "enterprise_kind": "个体工商户",
    "enterprise_industry": "金融业",
}
# a text that raises a topic (社保), says 个体户 and names an industry (宾馆)
MIXED = "我是个体户，开了一家宾馆，想问社保怎么交"


@pytest.mark.parametrize(
    ("drop", "department", "rule"),
    [
        ((), "商务局", RouteRule.COMMISSIONER),
        (("assigned_department",), "市场监管局", RouteRule.KNOWLEDGE),
        (("assigned_department", "matched_department"), "社发局", RouteRule.TOPIC),
    ],
)
def test_precedence_of_the_first_rules(
    router: Router, drop: tuple[str, ...], department: str, rule: RouteRule
) -> None:
    facts = {k: v for k, v in ALL_FACTS.items() if k not in drop}
    decision = route(router, MIXED, **facts)
    assert (decision.department, decision.rule) == (department, rule)


def test_individual_comes_before_industry(router: Router) -> None:
    decision = route(router, "我是个体户，开了一家宾馆", enterprise_industry="住宿餐饮业")
    assert (decision.department, decision.rule) == ("市场监管局", RouteRule.INDIVIDUAL)
    decision = route(router, "开了一家宾馆", enterprise_kind="个体工商户")
    assert (decision.department, decision.rule) == ("市场监管局", RouteRule.INDIVIDUAL)


def test_industry_comes_before_fallback_and_registry_before_text(router: Router) -> None:
    decision = route(router, "有个事情想找政府帮忙", enterprise_industry="金融业")
    assert (decision.department, decision.rule) == ("财政局", RouteRule.INDUSTRY)
    # the registry knows the enterprise; a hotel mentioned in the text is someone else
    decision = route(router, "我们想和一家宾馆合作", enterprise_industry="工业")
    assert decision.department == "工信局"
    # an industry the registry holds but 附件3 lacks: fall back to the text
    decision = route(router, "我们经营一家宾馆", enterprise_industry="农、林、牧、渔业")
    assert (decision.department, decision.evidence) == ("商务局", ("宾馆",))


def test_commissioner_without_a_department_is_not_a_rule(router: Router) -> None:
    decision = route(router, "有个事情想找政府帮忙", assigned_commissioner="张三")
    assert decision.rule is RouteRule.FALLBACK


def test_a_registered_enterprise_is_not_an_individual_because_of_a_word(router: Router) -> None:
    decision = route(router, "我们的客户多是个体户，我们是贸易公司", enterprise_kind="企业")
    assert (decision.department, decision.rule) == ("商务局", RouteRule.INDUSTRY)


def test_negated_individual_phrase(router: Router) -> None:
    decision = router.route_text("我们不是个体户，是一家贸易公司")
    assert decision.rule is RouteRule.INDUSTRY
    assert router.individual_phrases("我们不是个体户") == ()
    assert router.individual_phrases("我们是小商户") == ("小商户",)


def test_topic_in_a_self_description_counts_less_than_the_need(router: Router) -> None:
    decision = router.route_text("我们是一家科技型中小企业，想咨询社保")
    assert decision.department == "社发局"
    # alone it still decides
    assert router.route_text("我们是一家科技型中小企业，有问题").department == "科技局"


def test_topic_ties_go_to_the_rule_listed_first(router: Router) -> None:
    match = router.match_topic("营业执照和社保")
    assert match is not None
    assert match.rule.id == "social-insurance-labour"  # listed before market-registration
    match = router.match_topic("营业执照、经营范围变更和社保")
    assert match is not None and match.rule.id == "market-registration"
    assert match.keywords == ("营业执照", "经营范围变更")


# ------------------------------------------------------------------ aliases, reasons


@pytest.mark.parametrize("alias", ["市场局", "市场监督管理局", "工商局"])
def test_department_aliases_resolve(router: Router, alias: str) -> None:
    assert route(router, assigned_department=alias).department == "市场监管局"
    assert route(router, matched_department=alias).department == "市场监管局"


def test_unknown_department_in_facts_raises(router: Router) -> None:
    with pytest.raises(RoutingError, match="宇宙管理局"):
        route(router, "你好", assigned_department="宇宙管理局")


def test_reasons(router: Router) -> None:
    assert router.route_text("我们经营一家宾馆").reason == (
        "文本提及“宾馆”，属住宿餐饮业（附件3第5项“贸易业、住宿餐饮业”），由商务局主管"
    )
    assert router.route_text("营业执照怎么变更").reason == (
        "诉求涉及“营业执照”，属市场主体登记事项，由市场监管局办理"
    )
    assert router.route_text("我是个体户").reason == (
        "文本提及“个体户”，个体工商户由市场监管局分级分类服务（附件2第5项）"
    )
    assert route(router, enterprise_industry="工业").reason == (
        "企业登记行业为“工业”，属附件3第3项“工业、电力、采矿业”，由工信局主管"
    )
    assert route(router, assigned_department="商务局", assigned_commissioner="张三").reason == (
        "该企业由商务局企业服务专员张三包保服务，诉求由商务局负责办理"
    )
    assert "企业服务专员包保服务" in route(router, assigned_department="商务局").reason
    reason = route(router, matched_department="社发局", matched_entry_id="social-insurance").reason
    assert reason == "问题与知识库条目“social-insurance”相符，该事项由社发局负责"
    assert router.route_text("").reason == (
        "未能从诉求中判断所属事项和行业，由政务办兜底受理并协调（附件2第6项）"
    )


def test_decision_as_dict_is_json(router: Router) -> None:
    decision = router.route_text("我们经营一家宾馆")
    data = decision.as_dict()
    assert data == {"department": "商务局", "rule": "industry", "reason": decision.reason}
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


def test_rule_values_in_order_of_precedence() -> None:
    assert [r.value for r in RouteRule] == [
        "commissioner", "recruited", "park", "knowledge", "topic", "individual", "industry",
        "grid", "fallback",
    ]  # fmt: skip
    assert RouteRule.TOPIC == "topic"
    assert RouteRule.FALLBACK.label == "兜底服务"


@pytest.mark.parametrize("text", ["", "   ", "？？？", "😀", "a" * 100_000, "\x00"])
def test_never_raises_for_ordinary_text(router: Router, text: str) -> None:
    decision = router.route_text(text)
    assert decision.rule is RouteRule.FALLBACK
    assert decision.department == "政务办"


# ---------------------------------------------------------------------- service means


def test_service_means_are_annex_2() -> None:
    table = load_service_means()
    assert [(m.row, m.means) for m in table] == [
        (1, "“双万双服”包保服务机制"),
        (2, "招商企业精准对接服务"),
        (3, "行业主管部门主动服务"),
        (4, "楼宇、园区精细化服务"),
        (5, "个体工商户分级分类服务"),
        (6, "“网格化管理+政务工作站”兜底服务"),
    ]
    assert table.individual_department == "市场监管局"  # the seed writes 市场局
    assert table.by_key("individual").as_written == "市场局"
    assert table.fallback_departments == ("社发局", "政务办")
    assert len(table.recruiting_departments) == 14
    assert {"市场监管局", "政务办", "商务局"} <= set(table.recruiting_departments)
    assert table.row(4).departments[0] == "科技局"
    assert [m.row for m in table.means_of("政务办")] == [2, 6]


def _config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(config_dir(), target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_service_means_reject_an_alias(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "service_means.yaml", "departments: [市场监管局]", "departments: [市场局]")
    with pytest.raises(ConfigError, match="canonical name '市场监管局'") as info:
        load_router(cfg)
    assert info.value.path == str(cfg / "service_means.yaml")
    assert info.value.key == "service_means.4.departments.0"
    assert info.value.line is not None and info.value.line > 1


def test_service_means_departments_must_match_the_seed_text(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "service_means.yaml", "departments: [社发局, 政务办]", "departments: [政务办]")
    with pytest.raises(ConfigError, match="do not match as_written") as info:
        load_router(cfg)
    assert info.value.key == "service_means.5.departments"


# ------------------------------------------------------------------------ routing.yaml


def test_routing_yaml_rejects_unknown_placeholders(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "routing.yaml", "由{department}兜底受理", "由{dept}兜底受理")
    with pytest.raises(ConfigError, match=r"unknown placeholder \{dept\}") as info:
        load_router(cfg)
    assert info.value.key == "reasons.fallback"


def test_routing_yaml_rejects_a_keyword_in_two_topics(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "routing.yaml", "keywords: [商标, 专利", "keywords: [社保, 专利")
    with pytest.raises(ConfigError, match="already used by topic 'social-insurance-labour'"):
        load_router(cfg)


def test_fallback_department_must_serve_the_fallback_row(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "routing.yaml", "fallback_department: 政务办", "fallback_department: 财政局")
    with pytest.raises(ConfigError, match="not a 兜底 department") as info:
        load_router(cfg)
    lines = (cfg / "routing.yaml").read_text(encoding="utf-8").splitlines()
    expected = lines.index("fallback_department: 财政局") + 1
    assert (info.value.key, info.value.line) == ("fallback_department", expected)


def test_industry_department_must_be_an_industry_department(tmp_path: Path) -> None:
    cfg = _config_copy(tmp_path)
    _edit(cfg / "industries.yaml", "department: 财政局", "department: 政务办")
    with pytest.raises(ConfigError, match="not an industry department") as info:
        load_router(cfg)
    assert info.value.key == "industries.5.department"
    assert info.value.path == str(cfg / "industries.yaml")


# ------------------------------------------------------------------ the 名录库's facts


def test_recruiting_department_comes_after_the_commissioner(router: Router) -> None:
    decision = route(router, "营业执照怎么变更", recruited_by="投资促进局", building="天保大厦")
    assert (decision.department, decision.rule) == ("投促局", RouteRule.RECRUITED)
    assert decision.reason == "该企业由投促局招商落户，诉求由投促局精准对接服务（附件2第2项）"
    decision = route(
        router, "营业执照怎么变更", recruited_by="投促局", assigned_department="商务局"
    )
    assert decision.rule is RouteRule.COMMISSIONER


def test_a_department_that_does_not_recruit_is_not_a_recruiting_rule(router: Router) -> None:
    decision = route(router, "营业执照怎么变更", recruited_by="城环局")
    assert (decision.department, decision.rule) == ("市场监管局", RouteRule.TOPIC)


def test_a_known_building_goes_to_its_operator_before_the_topic(router: Router) -> None:
    decision = route(router, "营业执照怎么变更", building="天保大厦", grid="空港一网格")
    assert (decision.department, decision.rule) == ("天保控股", RouteRule.PARK)
    assert "天保大厦" in decision.reason and "附件2第4项" in decision.reason
    # a building routing.yaml does not list decides nothing
    decision = route(router, "营业执照怎么变更", building="某某写字楼")
    assert decision.rule is RouteRule.TOPIC


def test_the_grid_comes_after_the_industry_and_before_the_fallback(router: Router) -> None:
    decision = route(router, "有个事情想找政府帮忙", grid="空港一网格")
    assert (decision.department, decision.rule) == ("社发局", RouteRule.GRID)
    assert decision.reason == (
        "未能从诉求中判断所属事项和行业，该企业属网格“空港一网格”，"
        "由社发局网格化管理兜底服务（附件2第6项）"
    )
    decision = route(
        router, "有个事情想找政府帮忙", grid="空港一网格", enterprise_industry="金融业"
    )
    assert decision.rule is RouteRule.INDUSTRY


def test_parks_must_name_a_row_4_department(tmp_path: Path) -> None:
    import shutil

    from yxby import paths

    for name in ("departments.yaml", "industries.yaml", "gbt4754.yaml", "service_means.yaml"):
        shutil.copy(paths.config_dir() / name, tmp_path / name)
    text = (paths.config_dir() / "routing.yaml").read_text(encoding="utf-8")
    (tmp_path / "routing.yaml").write_text(
        text.replace("  - department: 天保控股\n", "  - department: 商务局\n"), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="row 4"):
        load_router(tmp_path)


def test_facts_of_a_registry_record(router: Router) -> None:
    registry = {
        "enterprise_kind": "企业",
        "enterprise_industry": "金融业",
        "assigned_department": None,
        "assigned_commissioner": None,
        "recruited_by": None,
        "building": "天保大厦",
        "grid": "空港一网格",
        "something_else": "ignored",
    }
    facts = RouteFacts.of("营业执照怎么变更", registry, matched_entry_id="x")
    assert (facts.building, facts.grid, facts.matched_entry_id) == ("天保大厦", "空港一网格", "x")
    assert router.route(facts).rule is RouteRule.PARK
    assert RouteFacts.of("你好") == RouteFacts(text="你好")
