"""An editor (编辑) works on masked logs only: no enterprise's file, no live chat, no intake."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from bot.app import App
from handoff import live
from handoff.conversations import LiveHandoff
from handoff.dossier import EnterpriseNotFound, dossier
from handoff.models import Commissioner, CommissionerRole, Enterprise
from tests.chatting import VALID_USCC, register_enterprise


def _editor(make_commissioner: Callable[..., Commissioner]) -> Commissioner:
    return make_commissioner(name="李编", department="市场监管局", role=CommissionerRole.EDITOR)


def test_an_editor_sees_no_enterprise_file(
    app: App, make_commissioner: Callable[..., Commissioner]
) -> None:
    register_enterprise(app)
    editor = _editor(make_commissioner)
    officer = make_commissioner(name="张敏", department="市场监管局")
    with app.db.begin() as session:
        assert session.scalars(select(Enterprise)).one().uscc == VALID_USCC
        assert dossier(session, officer, VALID_USCC).uscc == VALID_USCC
        with pytest.raises(EnterpriseNotFound):
            dossier(session, editor, VALID_USCC)


def test_an_editor_neither_sees_nor_takes_live_requests(
    make_commissioner: Callable[..., Commissioner],
) -> None:
    editor = _editor(make_commissioner)
    request = LiveHandoff(department="市场监管局")
    assert not live.may_act(editor, "市场监管局")
    assert not live.can_see(editor, request)
    assert str(live.visible_filter(editor)) == "false"
