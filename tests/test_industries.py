"""附件3 industries: the shipped table, text recognition, registry lookup and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing import load_departments
from routing.industries import IndustryTable, load_industries
from routing.matching import PhraseMatcher, clauses, normalize
from yxby.errors import ConfigError

# 附件3 as the seed writes it: row -> (行业类型, 责任部门)
ANNEX_3 = {
    1: ("服务业", "发改局"),
    2: ("建筑业、运输业、房地产业", "规建局"),
    3: ("工业、电力、采矿业", "工信局"),
    4: ("卫生和社会工作", "社发局"),
    5: ("贸易业、住宿餐饮业", "商务局"),
    6: ("金融业", "财政局"),
    7: ("科技创新业", "科技局"),
    8: ("文化、教育、体育、娱乐业", "文教局"),
    9: ("水利、环境和公共设施管理业", "城环局"),
}


@pytest.fixture(scope="module")
def table() -> IndustryTable:
    return load_industries()


def test_shipped_table_is_annex_3_row_by_row(table: IndustryTable) -> None:
    assert {r.row: (r.industry, r.department) for r in table} == ANNEX_3
    assert [r.row for r in table.rows] == sorted(ANNEX_3)


def test_every_department_is_canonical(table: IndustryTable) -> None:
    directory = load_departments()
    for row in table:
        assert directory.canonical(row.department) == row.department


@pytest.mark.parametrize(
    ("text", "row", "sector"),
    [
        ("我们是一家电子元器件生产企业", 3, "工业"),
        ("我们是矿产开采企业", 3, "采矿业"),
        ("我们是一家电力供应公司", 3, "电力行业"),
        ("我们经营一家宾馆", 5, "住宿餐饮业"),
        ("我们是一家大宗商品贸易公司", 5, "贸易业"),
        ("我们是一家小额贷款公司", 6, "金融业"),
        ("我们是一家建筑设计和工程总承包企业", 2, "建筑业"),
        ("我们公司从事道路货物运输", 2, "运输业"),
        ("我们是物业和房地产经纪公司", 2, "房地产业"),
        ("我们开了一家社区卫生服务站", 4, "卫生行业"),
        ("我们开办了一家养老院", 4, "社会工作"),
        ("我们是研发生物医药新技术的高新技术企业", 7, "科技创新业"),
        ("我们是一家出版和文化传媒公司", 8, "文化产业"),
        ("我们是一所民办培训学校", 8, "教育行业"),
        ("我们经营一家健身房", 8, "体育行业"),
        ("我们经营一家游乐场，属于娱乐业", 8, "娱乐业"),
        ("我们公司承接水利工程的运营维护", 9, "水利管理业"),
        ("我们是一家环境监测和固废处置企业", 9, "生态环境治理业"),
        ("我们负责园区的绿化养护和环卫", 9, "公共设施管理业"),
        ("我们是一家人力资源服务公司", 1, "服务业"),
    ],
)
def test_recognise_self_descriptions(
    table: IndustryTable, text: str, row: int, sector: str
) -> None:
    match = table.recognise(text)
    assert match is not None
    assert (match.row, match.sector, match.department) == (row, sector, ANNEX_3[row][1])
    assert match.source == "text"
    assert match.score >= table.recognition.min_score


def test_match_reports_keywords_strongest_first(table: IndustryTable) -> None:
    match = table.recognise("我们是一家电子元器件生产企业，想咨询工业企业的扶持政策")
    assert match is not None
    assert match.keywords == ("电子元器件", "生产企业", "工业企业")
    assert match.as_dict()["keywords"] == ["电子元器件", "生产企业", "工业企业"]


def test_longer_phrase_beats_the_shorter_one_inside_it(table: IndustryTable) -> None:
    # 工程 alone would be construction; 水利工程 is water management
    match = table.recognise("我们公司承接水利工程")
    assert match is not None
    assert match.row == 9
    assert "工程" not in match.keywords


def test_words_in_a_self_description_outweigh_the_need(table: IndustryTable) -> None:
    match = table.recognise("我们是一家贸易公司，想申请贷款")
    assert match is not None and match.department == "商务局"


def test_a_weak_word_alone_is_not_an_industry(table: IndustryTable) -> None:
    assert table.recognise("我们公司想申请贷款") is None
    assert table.recognise("我们是做工程的") is not None  # weak, but in a self-description


def test_head_of_the_name_breaks_a_tie(table: IndustryTable) -> None:
    # 建材 (industry) and 贸易 (trade) weigh the same; the word before 公司 is the business
    match = table.recognise("我们是一家建材贸易公司")
    assert match is not None and match.department == "商务局"


@pytest.mark.parametrize(
    "text",
    [
        "想进一步优化营商环境",  # 环境 in 营商环境 is not environmental management
        "我们是科技创新局引进的企业，有问题",  # a department name is not an industry
        "城市环境管理局的电话是多少",
        "企业文化建设怎么做",
        "有个事情想找政府帮忙",
        "想咨询一下",
    ],
)
def test_neutral_phrases_and_plain_requests_recognise_nothing(
    table: IndustryTable, text: str
) -> None:
    assert table.recognise(text) is None


@pytest.mark.parametrize("text", ["", "   ", "，。！？", "😀" * 10, "\x00\n\t"])
def test_recognise_never_raises_on_odd_text(table: IndustryTable, text: str) -> None:
    assert table.recognise(text) is None


def test_recognise_long_text(table: IndustryTable) -> None:
    text = "我们经营一家宾馆。" + "今天天气很好，" * 2000
    match = table.recognise(text)
    assert match is not None and match.row == 5


def test_full_width_and_case_are_normalised(table: IndustryTable) -> None:
    match = table.recognise("我们经营一家ＫＴＶ")
    assert match is not None and match.sector == "娱乐业"


@pytest.mark.parametrize(
    ("name", "row", "sector"),
    [
        ("工业", 3, "工业"),
        ("住宿餐饮业", 5, "住宿餐饮业"),
        ("住宿餐饮", 5, "住宿餐饮业"),
        ("贸易业、住宿餐饮业", 5, "贸易业、住宿餐饮业"),
        ("金融业", 6, "金融业"),
        ("金融", 6, "金融业"),
        ("服务业", 1, "服务业"),
        (" 建筑业 ", 2, "建筑业"),
        # GB/T 4754-2017 门类 names a registry may hold
        ("制造业", 3, "工业"),
        ("批发和零售业", 5, "贸易业"),
        ("交通运输、仓储和邮政业", 2, "运输业"),
        ("科学研究和技术服务业", 7, "科技创新业"),
        ("文化、体育和娱乐业", 8, "文化产业"),
        ("卫生和社会工作", 4, "卫生和社会工作"),
    ],
)
def test_lookup_registry_names(table: IndustryTable, name: str, row: int, sector: str) -> None:
    match = table.lookup(name)
    assert match is not None
    assert (match.row, match.sector, match.source) == (row, sector, "name")
    assert match.keywords == (name.strip(),)


def test_lookup_falls_back_to_recognising_the_name(table: IndustryTable) -> None:
    match = table.lookup("电子元器件制造")
    assert match is not None
    assert (match.row, match.source) == (3, "name")


@pytest.mark.parametrize("name", ["", "  ", "农、林、牧、渔业", "其他"])
def test_lookup_unknown_names(table: IndustryTable, name: str) -> None:
    assert table.lookup(name) is None


def test_row_by_number(table: IndustryTable) -> None:
    assert table.row(7).department == "科技局"
    with pytest.raises(KeyError):
        table.row(10)


# --------------------------------------------------------------------------- matching


def test_phrase_matcher_prefers_longest_then_leftmost() -> None:
    matcher = PhraseMatcher({"工程": "build", "水利工程": "water", "营商环境": None, "环境": "env"})
    hits = matcher.find(normalize("水利工程和营商环境以及环境"))
    assert [(h.phrase, h.value) for h in hits] == [("水利工程", "water"), ("环境", "env")]


def test_clauses_flag_self_descriptions() -> None:
    text = normalize("我们是一家宾馆，想申请贷款。谢谢")
    parts = clauses(text, ["我们是"])
    assert [(text[c.start : c.end], c.self_description) for c in parts] == [
        ("我们是一家宾馆", True),
        ("想申请贷款", False),
        ("谢谢", False),
    ]


# ------------------------------------------------------------------------- validation

GOOD = """\
recognition:
  min_score: 2
industries:
  - row: 1
    industry: 服务业
    department: 发改局
    sectors:
      - name: 服务业
        keywords:
          咨询公司: 3
  - row: 2
    industry: 金融业
    department: {dept}
    sectors:
      - name: 金融业
        aliases: [金融]
        keywords:
          {keyword}: {weight}
"""


def _write(tmp_path: Path, dept: str = "财政局", keyword: str = "银行", weight: int = 2) -> Path:
    path = tmp_path / "industries.yaml"
    path.write_text(GOOD.format(dept=dept, keyword=keyword, weight=weight), encoding="utf-8")
    return path


def test_minimal_file_loads(tmp_path: Path) -> None:
    table = load_industries(_write(tmp_path))
    match = table.recognise("我们是一家银行")
    assert match is not None and match.department == "财政局"


def test_unknown_department_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, dept="金融局")
    with pytest.raises(ConfigError) as info:
        load_industries(path)
    err = info.value
    assert (err.path, err.line, err.key) == (str(path), 13, "industries.1.department")
    assert "unknown department '金融局'" in str(err)
    assert f"{path}:13" in str(err)


def test_alias_is_rejected_with_the_canonical_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alias; write the canonical name '市场监管局'"):
        load_industries(_write(tmp_path, dept="市场局"))


def test_keyword_used_twice_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, keyword="咨询公司")
    with pytest.raises(ConfigError) as info:
        load_industries(path)
    assert info.value.line == 18
    assert info.value.key == "industries.1.sectors.0.keywords.咨询公司"
    assert "already used by row 1" in str(info.value)


def test_weight_out_of_range_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_industries(_write(tmp_path, weight=5))
    assert info.value.line == 18
    assert info.value.key == "industries.1.sectors.0.keywords.银行"


def test_duplicate_row_and_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "industries.yaml"
    path.write_text(
        GOOD.format(dept="财政局", keyword="银行", weight=2).replace("row: 2", "row: 1")
    )
    with pytest.raises(ConfigError, match="row 1 appears twice") as info:
        load_industries(path)
    assert info.value.line == 11
    path.write_text(GOOD.format(dept="财政局", keyword="银行", weight=2) + "extra: 1\n")
    with pytest.raises(ConfigError, match="未知字段") as info:
        load_industries(path)
    assert info.value.key == "extra"


def test_neutral_phrase_may_not_be_a_keyword(tmp_path: Path) -> None:
    path = tmp_path / "industries.yaml"
    text = GOOD.format(dept="财政局", keyword="银行", weight=2)
    path.write_text(text.replace("  min_score: 2\n", "  min_score: 2\n  neutral: [银行]\n"))
    with pytest.raises(ConfigError, match="neutral phrase '银行'") as info:
        load_industries(path)
    assert info.value.line == 3


# ------------------------------------------------------------- GB/T 4754-2017 codes


def test_gb_table_has_20_sections_and_97_divisions(table: IndustryTable) -> None:
    letters = [table.classify(chr(c)).code for c in range(ord("A"), ord("T") + 1)]
    assert letters == [chr(c) for c in range(ord("A"), ord("T") + 1)]
    names = {table.classify(f"{n:02d}").name for n in range(1, 98)}
    assert len(names) >= 96  # 70 房地产业 / K 房地产业 share a name, as in the standard
    with pytest.raises(ValueError, match="未知的国民经济行业代码"):
        table.classify("98")


@pytest.mark.parametrize(
    ("cell", "code", "name", "row", "department"),
    [
        ("C", "C", "制造业", 3, "工信局"),
        ("36", "36", "汽车制造业", 3, "工信局"),
        ("3611", "3611", "汽车制造业", 3, "工信局"),
        ("C3611", "3611", "汽车制造业", 3, "工信局"),
        ("汽车制造业", "36", "汽车制造业", 3, "工信局"),
        ("5212", "5212", "零售业", 5, "商务局"),
        ("H", "H", "住宿和餐饮业", 5, "商务局"),
        ("餐饮业", "62", "餐饮业", 5, "商务局"),
        ("6611", "6611", "货币金融服务", 6, "财政局"),
        ("7310", "7310", "研究和试验发展", 7, "科技局"),
        ("8910", "8910", "体育", 8, "文教局"),
        ("7720", "7720", "生态保护和环境治理业", 9, "城环局"),
        ("8511", "8511", "社会工作", 4, "社发局"),
        ("5437", "5437", "道路运输业", 2, "规建局"),
        ("工业", None, "工业", 3, "工信局"),
    ],
)
def test_register_cells_map_to_annex_3(
    table: IndustryTable, cell: str, code: str | None, name: str, row: int, department: str
) -> None:
    found = table.classify(cell)
    assert (found.code, found.name) == (code, name)
    assert found.match is not None
    assert (found.match.row, found.match.department) == (row, department)


def test_codes_without_an_annex_3_row_are_known_but_unrouted(table: IndustryTable) -> None:
    found = table.classify("9210")
    assert (found.code, found.name, found.match) == ("9210", "国家机构", None)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("A3611", "未知的国民经济行业代码「A3611」"),
        ("9999", "未知的国民经济行业代码"),
        ("宇宙飞船殖民业", "未知的行业「宇宙飞船殖民业」"),
        ("我们是一家宾馆", "未知的行业"),  # words are not guessed into an industry
        ("", "行业为空"),
    ],
)
def test_unknown_industries_are_refused(table: IndustryTable, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table.classify(cell)


def test_gb_names_route_like_annex_names(table: IndustryTable) -> None:
    match = table.lookup("计算机、通信和其他电子设备制造业")
    assert match is not None and (match.row, match.department) == (3, "工信局")
