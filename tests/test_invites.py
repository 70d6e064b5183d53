"""Invite codes are accepted however a phone keyboard types them."""

from __future__ import annotations

import pytest

from handoff.invites import hash_code, normalize_code


@pytest.mark.parametrize(
    "typed",
    [
        "ABCD-EFGH-JKMN",
        "abcd efgh jkmn",
        "ＡＢＣＤ－ＥＦＧＨ－ＪＫＭＮ",
        "ABCD—EFGH—JKMN",
        " abcd_efgh_jkmn\n",
    ],
)
def test_codes_are_normalised_before_hashing(typed: str) -> None:
    assert normalize_code(typed) == "ABCDEFGHJKMN"
    assert hash_code(typed) == hash_code("ABCD-EFGH-JKMN")


def test_a_different_code_hashes_differently() -> None:
    assert hash_code("ABCD-EFGH-JKMP") != hash_code("ABCD-EFGH-JKMN")
