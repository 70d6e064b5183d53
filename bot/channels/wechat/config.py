"""WeChat channel configuration: :class:`WeChatConfig`, read from ``YXBY_WECHAT_*`` variables.

Also the channel-wide constants (API base, default custom menu), the check that an
``EncodingAESKey`` is the 43-character key 微信公众平台 shows, and the template messages
for ticket notices (:class:`WeChatTemplates`: the 工单进度 template id from
``YXBY_WECHAT_TEMPLATE_NOTICE``, per-event ids and the field mapping from
``config/wechat_templates.yaml``).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from bot.notify import NOTICE_FIELDS, NoticeEvent
from bot.types import Channel
from yxby import paths
from yxby.errors import ConfigError
from yxby.yamlconf import StrictModel, load_model

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_MENU",
    "TEMPLATES_FILE",
    "TEMPLATE_NOTICE_ENV",
    "EventTemplate",
    "TemplateSettings",
    "WeChatConfig",
    "WeChatTemplates",
    "load_wechat_templates",
    "wechat_config_from_env",
]

CHANNEL = Channel.WECHAT.value
DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_MENU: Mapping[str, str] = {
    "FAQ": "菜单",
    "MY_TICKETS": "查询",
    "HUMAN": "转人工",
    "MY_COMMISSIONER": "我的专员",
}
"""Custom-menu ``CLICK`` keys and the dialogue command each one sends."""


TEMPLATE_NOTICE_ENV = "YXBY_WECHAT_TEMPLATE_NOTICE"
"""The id of the general 工单进度 template (微信公众平台 → 模板消息 → 我的模板)."""
TEMPLATES_FILE = "wechat_templates.yaml"

_PLACEHOLDERS = tuple(name for name in NOTICE_FIELDS if name != "link")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _field_name(name: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"「{name}」不是模板字段名（如 first、keyword1、remark、thing1）")
    return name


def _field_text(text: str) -> str:
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ValueError(f"占位符写法有误（{exc}）") from None
    unknown = sorted(used - set(_PLACEHOLDERS))
    if unknown:
        allowed = "、".join(f"{{{n}}}" for n in _PLACEHOLDERS)
        raise ValueError(f"未知的占位符 {{{unknown[0]}}}，可用：{allowed}")
    return text


def _template_id(value: str) -> str:
    if value and not _TEMPLATE_ID.fullmatch(value):
        raise ValueError("模板 ID 只能由字母、数字、下划线和连字符组成")
    return value


OUTREACH_PLACEHOLDERS = ("kind", "title", "body", "sender", "time")
"""What a notice to enterprises (``payload["outreach"]``, ``handoff.notices``) fills in."""


def _outreach_text(text: str) -> str:
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ValueError(f"占位符写法有误（{exc}）") from None
    unknown = sorted(used - set(OUTREACH_PLACEHOLDERS))
    if unknown:
        allowed = "、".join(f"{{{n}}}" for n in OUTREACH_PLACEHOLDERS)
        raise ValueError(f"未知的占位符 {{{unknown[0]}}}，可用：{allowed}")
    return text


FieldName = Annotated[str, AfterValidator(_field_name)]
FieldText = Annotated[str, AfterValidator(_field_text)]
OutreachText = Annotated[str, AfterValidator(_outreach_text)]
TemplateId = Annotated[str, AfterValidator(_template_id)]


class EventTemplate(StrictModel):
    """A template for one kind of notice: its own id and/or its own field mapping."""

    template_id: TemplateId = ""
    fields: dict[FieldName, FieldText] | None = Field(default=None, min_length=1)


class OutreachTemplate(StrictModel):
    """The template for notices to enterprises (政策解读, 工作动态, 为企服务工作单)."""

    template_id: TemplateId = ""
    """Its own template; empty: the general one (``YXBY_WECHAT_TEMPLATE_NOTICE``)."""
    fields: dict[FieldName, OutreachText] = Field(min_length=1)


class TemplateSettings(StrictModel):
    """The whole ``config/wechat_templates.yaml``."""

    max_chars: int = Field(default=200, ge=10, le=1000)
    fields: dict[FieldName, FieldText] = Field(min_length=1)
    events: dict[NoticeEvent, EventTemplate] = Field(default_factory=dict)
    outreach: OutreachTemplate | None = None


@dataclass(frozen=True)
class WeChatTemplates:
    """Which template a ticket notice goes out with, and how its fields are filled."""

    settings: TemplateSettings
    notice_id: str | None = None
    """The general 工单进度 template (``YXBY_WECHAT_TEMPLATE_NOTICE``)."""

    def message(self, notice: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, str]]] | None:
        """``(template_id, data)`` for *notice* (a payload's ``notice``); ``None`` when no
        template is configured for its event."""
        spec = self.settings.events.get(str(notice.get("event", "")))  # type: ignore[call-overload]
        template_id = (spec.template_id if spec is not None else "") or self.notice_id
        if not template_id:
            return None
        fields = (spec.fields if spec is not None else None) or self.settings.fields
        values = {name: str(notice.get(name) or "") for name in _PLACEHOLDERS}
        limit = self.settings.max_chars
        data = {}
        for name, text in fields.items():
            value = text.format(**values)
            if len(value) > limit:
                value = value[: limit - 1] + "…"
            data[name] = {"value": value}
        return template_id, data

    def outreach_message(
        self, outreach: Mapping[str, Any]
    ) -> tuple[str, dict[str, dict[str, str]]] | None:
        """``(template_id, data)`` for a notice to enterprises (a payload's ``outreach``);
        ``None`` when no template is configured for notices."""
        spec = self.settings.outreach
        if spec is None:
            return None
        template_id = spec.template_id or self.notice_id
        if not template_id:
            return None
        values = {name: str(outreach.get(name) or "") for name in OUTREACH_PLACEHOLDERS}
        limit = self.settings.max_chars
        data = {}
        for name, text in spec.fields.items():
            value = text.format(**values)
            if len(value) > limit:
                value = value[: limit - 1] + "…"
            data[name] = {"value": value}
        return template_id, data


def load_wechat_templates(path: Path, notice_id: str | None = None) -> WeChatTemplates:
    """Load *path* (``config/wechat_templates.yaml``); ``ConfigError`` with file:line and key."""
    return WeChatTemplates(load_model(path, TemplateSettings), notice_id or None)


@dataclass(frozen=True)
class WeChatConfig:
    """Everything the WeChat channel needs; secrets come from the environment."""

    token: str
    appid: str
    secret: str
    aes_key: str | None = None
    api_base: str = DEFAULT_API_BASE
    menu: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MENU))
    path: str = "/wechat"
    reply_budget: float = 3.5  # seconds for a passive reply; WeChat gives up after 5
    max_body_bytes: int = 64 * 1024
    http_timeout: float = 20.0  # read timeout of one HTTP call (connect: 5 s); a send has 25 s
    window: timedelta = timedelta(hours=48)
    pushes_per_message: int = 5
    continuation_ttl: timedelta = timedelta(hours=2)
    templates: WeChatTemplates | None = None
    """Template messages for ticket notices outside the 48-hour window (``None``: none;
    such notices are held until the user writes again)."""


def wechat_config_from_env(
    env: Mapping[str, str], *, config_dir: Path | None = None
) -> WeChatConfig:
    """Read ``YXBY_WECHAT_*`` from *env*; raises ``ConfigError`` naming the bad variable.

    The template mapping is read from *config_dir* (default ``YXBY_CONFIG_DIR`` in *env*,
    else the shipped ``config/``) ``/wechat_templates.yaml``.
    """

    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError("is missing (set it to the value shown in 微信公众平台)", key=name)
        return value

    token = required("YXBY_WECHAT_TOKEN")
    appid = required("YXBY_WECHAT_APPID")
    secret = required("YXBY_WECHAT_SECRET")
    aes_key = env.get("YXBY_WECHAT_AES_KEY", "").strip() or None
    if aes_key is not None:
        _check_aes_key(aes_key)
    menu: dict[str, str] = dict(DEFAULT_MENU)
    raw_menu = env.get("YXBY_WECHAT_MENU", "").strip()
    if raw_menu:
        try:
            parsed = json.loads(raw_menu)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"is not valid JSON: {exc}", key="YXBY_WECHAT_MENU") from exc
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in parsed.items()
        ):
            raise ConfigError(
                'expected a JSON object of menu key → command, e.g. {"FAQ": "菜单"}',
                key="YXBY_WECHAT_MENU",
            )
        menu = {k: v.strip() for k, v in parsed.items()}
    budget = 3.5
    raw_budget = env.get("YXBY_WECHAT_REPLY_BUDGET", "").strip()
    if raw_budget:
        try:
            budget = float(raw_budget)
        except ValueError:
            budget = -1.0
        if not 0 < budget < 5:
            raise ConfigError(
                "expected seconds between 0 and 5 (WeChat waits 5 s)",
                key="YXBY_WECHAT_REPLY_BUDGET",
            )
    notice_id = env.get(TEMPLATE_NOTICE_ENV, "").strip()
    if notice_id and not _TEMPLATE_ID.fullmatch(notice_id):
        raise ConfigError(
            "expected the template id shown in 微信公众平台 (letters, digits, _ and -)",
            key=TEMPLATE_NOTICE_ENV,
        )
    folder = config_dir or (
        Path(env["YXBY_CONFIG_DIR"]) if env.get("YXBY_CONFIG_DIR") else paths.config_dir()
    )
    templates = None
    source = folder / TEMPLATES_FILE
    if source.exists() or notice_id:
        templates = load_wechat_templates(source, notice_id)
    return WeChatConfig(
        token=token,
        appid=appid,
        secret=secret,
        aes_key=aes_key,
        api_base=env.get("YXBY_WECHAT_API_BASE", "").strip() or DEFAULT_API_BASE,
        menu=menu,
        reply_budget=budget,
        templates=templates,
    )


def _check_aes_key(key: str) -> None:
    """Raise ``ConfigError`` unless *key* is a 43-character EncodingAESKey (32 bytes)."""
    import base64
    import binascii

    try:
        ok = len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            "expected the 43-character EncodingAESKey from 微信公众平台", key="YXBY_WECHAT_AES_KEY"
        )
