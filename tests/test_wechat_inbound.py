"""A plain WeChat message is read from the XML tree already parsed for safety, and comes
out exactly as wechatpy's ``parse_message`` makes it; events and anything unusual are left
to ``parse_message``."""

from __future__ import annotations

import pytest
from wechatpy import parse_message

from bot.channels.wechat.inbound import _plain_message, _safe_root, parse_body

HEAD = (
    "<ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
    "<CreateTime>1764547200</CreateTime>"
)
PLAIN = {
    "text": "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[  营业执照 \n ]]></Content>"
    "<MsgId>10001</MsgId>",
    "empty text": "<MsgType>text</MsgType><Content></Content><MsgId>10002</MsgId>",
    "voice": "<MsgType>voice</MsgType><MediaId>m1</MediaId><Format>amr</Format>"
    "<Recognition>社保怎么转移</Recognition><MsgId>10003</MsgId>",
    "image": "<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m2</MediaId>"
    "<MsgId>10004</MsgId>",
    "location": "<MsgType>location</MsgType><Location_X>31.2</Location_X>"
    "<Location_Y>121.5</Location_Y><Scale>15</Scale><Label>外高桥</Label><MsgId>10005</MsgId>",
    "link": "<MsgType>link</MsgType><Title>t</Title><Description>d</Description>"
    "<Url>http://u</Url><MsgId>10006</MsgId>",
    "unknown kind": "<MsgType>miniprogrampage</MsgType><MsgId>10007</MsgId>",
}
LEFT_TO_WECHATPY = {
    "event": "<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_7</EventKey>",
    "nested": "<MsgType>event</MsgType><Event>scancode_push</Event>"
    "<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>1</ScanResult></ScanCodeInfo>",
    "repeated tag": "<MsgType>text</MsgType><Content>a</Content><Content>b</Content>",
    "attribute": '<MsgType>text</MsgType><Content lang="zh">a</Content>',
}


@pytest.mark.parametrize("name", PLAIN)
def test_a_plain_message_is_what_wechatpy_makes_of_it(name: str) -> None:
    xml = f"<xml>{HEAD}{PLAIN[name]}</xml>"
    mine = _plain_message(_safe_root(xml.encode()))
    theirs = parse_message(xml)
    assert mine is not None
    assert type(mine) is type(theirs)
    assert mine._data == theirs._data
    for field in ("id", "source", "target", "time", "type"):
        assert getattr(mine, field) == getattr(theirs, field)


@pytest.mark.parametrize("name", LEFT_TO_WECHATPY)
def test_events_and_unusual_trees_are_parsed_by_wechatpy(name: str) -> None:
    xml = f"<xml>{HEAD}{LEFT_TO_WECHATPY[name]}</xml>"
    assert _plain_message(_safe_root(xml.encode())) is None
    parsed = parse_body(xml.encode(), {}, None)  # still a message, as before
    assert type(parsed.message) is type(parse_message(xml))
