import pytest

from routing import load_departments
from yxby.errors import RoutingError

SEED_NAMES = [
    # 附件2 and 附件3
    "发改局", "工信局", "商务局", "财政局", "科技局", "文教局", "规建局", "城环局", "社发局",
    "政务办", "市场监管局", "投促局", "招商局", "新经济促进局", "科技创新局", "海港管理局",
    "新材料产业园发展局", "海洋经济局", "自贸局", "临港口岸局", "航空产业发展局",
    "航空物流区管理局", "天保控股", "临港控股", "城更集团",
]  # fmt: skip


def test_every_department_named_in_the_seed_is_known() -> None:
    d = load_departments()
    missing = [n for n in SEED_NAMES if n not in d]
    assert missing == []


@pytest.mark.parametrize("alias", ["市场局", "市场监管局", "市场监督管理局"])
def test_market_regulation_aliases_resolve_to_one_name(alias: str) -> None:
    assert load_departments().canonical(alias) == "市场监管局"


def test_unknown_department_raises_routing_error() -> None:
    with pytest.raises(RoutingError, match="未知部门"):
        load_departments().canonical("宇宙管理局")


def test_mentioned_in_prefers_longest_names() -> None:
    d = load_departments()
    assert d.mentioned_in("请市场监督管理局和科技创新局处理") == ["市场监管局", "科技创新局"]


def test_roles() -> None:
    d = load_departments()
    industry_leads = {x.name for x in d.with_role("行业主管部门")}
    assert industry_leads == {
        "发改局", "工信局", "商务局", "财政局", "科技局", "文教局", "规建局", "城环局", "社发局",
    }  # fmt: skip
