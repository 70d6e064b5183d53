from pathlib import Path

import pytest

from knowledge.tokenizer import Tokenizer, load_lexicon, normalize


def test_normalize_folds_full_width_and_case() -> None:
    assert normalize("ＡＢＣ１２３　营业执照？") == "abc123 营业执照?"


@pytest.mark.parametrize(
    "word", ["保税区", "双万双服", "个体工商户", "统一社会信用代码", "营商环境", "联席会议"]
)
def test_domain_words_stay_whole(tokenizer: Tokenizer, word: str) -> None:
    assert word in tokenizer.tokenize(f"关于{word}的问题")


def test_synonyms_meet_in_one_term(tokenizer: Tokenizer) -> None:
    assert "个体工商户" in tokenizer.tokenize("我是个体户")
    assert "营业执照" in tokenizer.tokenize("执照丢了")
    # department aliases come from config/departments.yaml
    assert "市场监管局" in tokenizer.tokenize("市场局在哪")
    assert "市场监管局" in tokenizer.tokenize("市场监督管理局在哪")


def test_stop_words_and_punctuation_are_dropped(tokenizer: Tokenizer) -> None:
    tokens = tokenizer.tokenize("请问，我们的营业执照吗？！")
    assert "请问" not in tokens and "的" not in tokens and "，" not in tokens
    assert "营业执照" in tokens
    assert tokenizer.tokenize("!!!???") == []
    assert tokenizer.tokenize("😀😀") == []


def test_search_mode_adds_sub_words(tokenizer: Tokenizer) -> None:
    tokens = tokenizer.tokenize("统一社会信用代码")
    assert {"信用", "代码", "统一社会信用代码"} <= set(tokens)


def test_full_width_query_equals_half_width(tokenizer: Tokenizer) -> None:
    assert tokenizer.tokenize("１２３４５热线") == tokenizer.tokenize("12345热线")


def test_jieba_cache_lives_in_data_dir(tokenizer: Tokenizer, tmp_path: Path) -> None:
    Tokenizer(cache_dir=tmp_path / "jieba").tokenize("测试")
    assert any((tmp_path / "jieba").iterdir())


def test_lexicon_includes_department_aliases() -> None:
    lex = load_lexicon()
    assert lex.synonyms["市场局"] == "市场监管局"
    assert "的" in lex.stopwords


def test_character_ngrams_count_for_ranking_not_for_coverage() -> None:
    tk = Tokenizer(char_unigrams=True, char_bigrams=True)
    analysis = tk.analyze("出口退税怎么办")
    assert "退税" in analysis.tokens and "税" in analysis.tokens and "口退" in analysis.tokens
    assert "口退" not in analysis.words and "税" not in analysis.words
    plain = Tokenizer()
    assert "口退" not in plain.analyze("出口退税怎么办").tokens
