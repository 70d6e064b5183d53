"""Recognisers for what a user typed: commands, yes/no, choice numbers, phone numbers, codes.

Pure functions over normalised text (NFKC, lower case), shared by every channel.
"""

from __future__ import annotations

import enum
import re

from knowledge.tokenizer import normalize

__all__ = [
    "TICKET_NUMBER",
    "Command",
    "command_of",
    "is_no",
    "is_yes",
    "meaningful",
    "parse_choice",
    "parse_phone",
    "rating_of",
]

TICKET_NUMBER = re.compile(r"(?<![A-Za-z0-9])yx-\d{8}-\d{4}(?!\d)", re.IGNORECASE)
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z0-9]")


class Command(enum.StrEnum):
    START = "start"
    HELP = "help"
    CANCEL = "cancel"
    STATUS = "status"
    BIND = "bind"
    HUMAN = "human"
    NEW_TICKET = "new_ticket"
    END = "end"


_COMMANDS: tuple[tuple[Command, re.Pattern[str]], ...] = tuple(
    (cmd, re.compile(pattern))
    for cmd, pattern in (
        (Command.START, r"^/start\b"),
        (Command.HELP, r"^(/help|/menu|帮助|菜单|功能|help|menu|\?|？)$"),
        (Command.CANCEL, r"^(/cancel|取消|退出|算了|不办了|返回)[。.!！]?$"),
        (
            Command.STATUS,
            r"^(/status|查询|进度|查进度|查询进度|我的诉求|办理进度|诉求进度)[。?？]?$",
        ),
        (Command.BIND, r"^(/bind|绑定)(\s|$|[:：])"),
        (Command.HUMAN, r"^/human$"),
        (
            Command.NEW_TICKET,
            r"^(提交诉求|登记诉求|我要提诉求|提诉求|新诉求|我要反映问题)[。!！]?$",
        ),
        (Command.END, r"^(/end|结束对话|结束)$"),
    )
)


def command_of(text: str) -> Command | None:
    """The command *text* is, if any (``绑定 …`` is BIND with its argument)."""
    norm = normalize(text)
    for cmd, pattern in _COMMANDS:
        if pattern.search(norm):
            return cmd
    return None


def command_argument(text: str) -> str:
    """What follows the command word (``绑定 9112…`` → ``9112…``)."""
    norm = normalize(text)
    parts = re.split(r"[\s:：]+", norm, maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


_YES = re.compile(
    r"^(是|是的|对|对的|好|好的|嗯|需要|要|可以|行|确认|确认提交|提交|登记|登记诉求|已解决|解决了|"
    r"有帮助|谢谢|感谢|明白了|ok|yes|y)[啊呀了的吧!！。.]*$"
)
_NO = re.compile(
    r"^(否|不是|不|不要|不用|不用了|不需要|没有|没|未解决|没解决|没有解决|不行|no|n)[啊呀了的吧!！。.]*$"
)


def is_yes(text: str) -> bool:
    """A short affirmative answer."""
    return bool(_YES.match(normalize(text)))


def is_no(text: str) -> bool:
    """A short negative answer."""
    return bool(_NO.match(normalize(text)))


def parse_choice(text: str) -> int | None:
    """A choice number (``2``, ``第2个``, ``２``, ``二``), or ``None`` when *text* is not one."""
    norm = normalize(text)
    m = re.fullmatch(r"(?:第)?\s*(\d{1,2}|[一二三四五六七八九十])\s*(?:个|项|条|号)?[。.]?", norm)
    if not m:
        return None
    value = m.group(1)
    if value.isdigit():
        return int(value)
    return "一二三四五六七八九十".index(value) + 1


_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}\d{7,8}$")


def parse_phone(text: str) -> str | None:
    """A mainland mobile or landline number in canonical form, or ``None``.

    Accepts spaces, dashes and a +86/0086 prefix: ``138 0013 8000``, ``022-12345678``.
    """
    digits = re.sub(r"[\s\-()（）]", "", normalize(text))
    digits = re.sub(r"^(\+86|0086)", "", digits)
    if _MOBILE.match(digits):
        return digits
    if _LANDLINE.match(digits):
        area = 3 if digits[:3] in {"010", "020", "021", "022", "023", "024", "025", "027",
                                   "028", "029"} else 4  # fmt: skip
        return f"{digits[:area]}-{digits[area:]}"
    return None


_RATINGS = {"满意": "满意", "非常满意": "满意", "基本满意": "基本满意", "一般": "基本满意",
            "不满意": "不满意", "很不满意": "不满意", "非常不满意": "不满意"}  # fmt: skip


def rating_of(text: str) -> str | None:
    """满意 / 基本满意 / 不满意 when *text* is one of them (or a close wording)."""
    return _RATINGS.get(normalize(text).rstrip("。.!！"))


def meaningful(text: str) -> bool:
    """True when *text* has a letter, digit or Chinese character (not only emoji/punctuation)."""
    return bool(_MEANINGFUL.search(text))
