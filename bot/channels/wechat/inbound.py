"""Inbound WeChat messages: safe XML, safe-mode decryption, and translation to ``Incoming``.

:func:`parse_body` refuses DTDs, entities and malformed XML, decrypts safe-mode (AES)
bodies and lets wechatpy parse the message; :func:`incoming_of` turns the message or menu
event into an :class:`~bot.types.Incoming` (``None`` for events there is nothing to say to);
:func:`record_of` and :func:`incoming_of_record` store one to replay it after a restart.
The errors :class:`_BadRequest` (400) and :class:`_Forbidden` (403) say how to answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage

from bot.channels.wechat.config import CHANNEL, DEFAULT_MENU
from bot.types import Incoming, MessageKind

__all__ = ["incoming_of", "incoming_of_record", "parse_body", "record_of"]

log = logging.getLogger("yxby.wechat")

_OPENID = re.compile(r"[A-Za-z0-9_-]{1,100}")


class _BadRequest(Exception):
    """The request is not a usable WeChat message (answered 400)."""


class _Forbidden(Exception):
    """The request is not from WeChat (answered 403)."""


def _safe_root(data: bytes) -> Element:
    """The parsed XML, refusing DTDs (so entity declarations) and anything malformed."""
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _BadRequest(f"malformed XML: {type(exc).__name__}") from exc
    if root.tag != "xml":
        raise _BadRequest(f"unexpected root element {root.tag!r}")
    return root


@dataclass(frozen=True)
class _Parsed:
    message: Any  # a wechatpy message or event
    root: Element
    encrypted: bool


def parse_body(body: bytes, query: Mapping[str, str], crypto: WeChatCrypto | None) -> _Parsed:
    """The message in *body*, decrypted with *crypto* when the request is in safe mode.

    *query* is the request's query string (``encrypt_type``, ``msg_signature`` …). Raises
    :class:`_Forbidden` or :class:`_BadRequest`.
    """
    root = _safe_root(body)
    aes = query.get("encrypt_type", "raw").lower() == "aes"
    if crypto is not None and not aes:
        raise _Forbidden("plain request while an AES key is configured")
    if aes and crypto is not None:
        encrypt = root.findtext("Encrypt")
        if not encrypt:
            raise _BadRequest("no Encrypt element")
        try:
            plain = crypto.decrypt_message(
                {"Encrypt": encrypt},
                query.get("msg_signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
            )
        except (InvalidSignatureException, InvalidAppIdException) as exc:
            raise _Forbidden(type(exc).__name__) from exc
        except Exception as exc:  # undecryptable input: wechatpy has no error type for it
            raise _BadRequest(f"cannot decrypt: {type(exc).__name__}") from exc
        data = plain.encode() if isinstance(plain, str) else bytes(plain)
        root = _safe_root(data)
    elif aes and root.find("MsgType") is None:
        raise _BadRequest("safe-mode message but YXBY_WECHAT_AES_KEY is not set")
    else:
        data = body
    try:
        message = _plain_message(root)
        if message is None:
            message = parse_message(data.decode())
        _ = (message.source, message.time, message.id)  # typed fields parse lazily
    except Exception as exc:  # wechatpy raises KeyError/TypeError/ValueError on odd XML
        raise _BadRequest(f"unparseable message: {type(exc).__name__}") from exc
    return _Parsed(message, root, aes and crypto is not None)


def _plain_message(root: Element) -> Any | None:
    """The wechatpy message of a flat, non-event *root* — what ``parse_message`` makes of it,
    from the tree already parsed (not the XML parsed a second time) — else ``None``.

    Flat: unique child elements without attributes or children, whose text (stripped, as
    xmltodict gives it; empty is ``None``) is all there is. Events and anything else go
    through ``parse_message``.
    """
    if root.attrib:
        return None
    fields: dict[str, str | None] = {}
    for child in root:
        if len(child) or child.attrib or child.tag in fields:
            return None
        fields[child.tag] = (child.text or "").strip() or None
    kind = (fields.get("MsgType") or "").lower()
    if not kind or kind == "event" or kind.startswith("device_"):
        return None
    return MESSAGE_TYPES.get(kind, UnknownMessage)(fields)


def incoming_of(parsed: _Parsed, menu: Mapping[str, str]) -> Incoming | None:
    """*parsed* as an ``Incoming``; a menu ``CLICK`` sends the command *menu* gives its key."""
    message, root = parsed.message, parsed.root
    user = message.source
    if not isinstance(user, str) or not _OPENID.fullmatch(user):
        raise _BadRequest("no usable FromUserName")
    created = int(message.time or 0)
    try:
        at = datetime.fromtimestamp(created, UTC) if created > 0 else None
    except (OverflowError, OSError, ValueError):
        at = None
    common: dict[str, Any] = {
        "channel": CHANNEL,
        "user_key": user,
        # scoped to the sender: a MsgId replayed under another user is another message
        "msg_id": f"{user}:{message.id}" if message.id else f"{user}:{created}",
        "at": at,
    }
    kind = (root.findtext("MsgType") or "").strip().lower()
    if kind == "text":
        return Incoming(text=_str(message.content), **common)
    if kind == "voice":
        recognised = _str(message.recognition).strip()
        return Incoming(text=recognised, kind=MessageKind.VOICE, **common)
    if kind == "image":
        extra = {"media_id": _str(message.media_id), "pic_url": _str(message.image)}
        return Incoming(kind=MessageKind.IMAGE, extra=extra, **common)
    if kind == "location":
        extra = {
            "label": _str(message.label),
            "lat": _str(message.location_x),
            "lng": _str(message.location_y),
        }
        return Incoming(kind=MessageKind.LOCATION, extra=extra, **common)
    if kind == "event":
        return _event(root, common, menu)
    if kind:  # file, video, shortvideo, link, miniprogrampage …: not text
        return Incoming(kind=MessageKind.FILE, extra={"type": kind}, **common)
    raise _BadRequest("no MsgType")


def _event(root: Element, common: dict[str, Any], menu: Mapping[str, str]) -> Incoming | None:
    event = (root.findtext("Event") or "").strip().lower()
    key = (root.findtext("EventKey") or "").strip()
    if event == "subscribe":
        return Incoming(kind=MessageKind.SUBSCRIBE, payload=key or None, **common)
    if event == "unsubscribe":
        return Incoming(kind=MessageKind.UNSUBSCRIBE, **common)
    if event == "click":
        command = menu.get(key)
        if command is None:
            log.warning("wechat: menu key %r has no command; showing the menu", key)
            command = DEFAULT_MENU["FAQ"]
        return Incoming(text=command, extra={"menu_key": key}, **common)
    return None  # VIEW, SCAN, LOCATION reports, job notices: nothing to say


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def record_of(msg: Incoming) -> dict[str, Any]:
    """*msg* as JSON-able fields: what is stored to answer it later (after a restart too)."""
    return {
        "channel": msg.channel,
        "user_key": msg.user_key,
        "text": msg.text,
        "kind": msg.kind.value,
        "msg_id": msg.msg_id,
        "payload": msg.payload,
        "display_name": msg.display_name,
        "reply_to": msg.reply_to,
        "at": msg.at.isoformat() if msg.at is not None else None,
        "extra": dict(msg.extra),
    }


def incoming_of_record(record: Mapping[str, Any]) -> Incoming:
    """The :class:`~bot.types.Incoming` a :func:`record_of` record describes."""
    at = record.get("at")
    return Incoming(
        channel=str(record["channel"]),
        user_key=str(record["user_key"]),
        text=str(record.get("text") or ""),
        kind=MessageKind(record.get("kind") or MessageKind.TEXT.value),
        msg_id=record.get("msg_id"),
        payload=record.get("payload"),
        display_name=record.get("display_name"),
        reply_to=record.get("reply_to"),
        at=datetime.fromisoformat(at) if at else None,
        extra=dict(record.get("extra") or {}),
    )
