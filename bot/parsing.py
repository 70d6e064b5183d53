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
    "SmallTalk",
    "chases_ticket",
    "command_of",
    "describes_need",
    "edit_of",
    "is_no",
    "is_yes",
    "meaningful",
    "parse_choice",
    "parse_phone",
    "rating_of",
    "small_talk_of",
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
    r"有帮助|明白了|ok|yes|y)[啊呀了的吧!！。.]*$"
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


class SmallTalk(enum.StrEnum):
    """Things people say that are neither a question nor an answer to one."""

    HELLO = "hello"
    THANKS = "thanks"
    OK = "ok"
    BYE = "bye"


_SMALL_TALK: tuple[tuple[SmallTalk, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (SmallTalk.HELLO, r"^(你好|您好|你们好|hi|hello|嗨|哈喽|在吗|在不在|有人吗|早上好|上午好|"
                          r"下午好|晚上好|早|早安)(啊|呀|呢)?$"),
        (SmallTalk.THANKS, r"^((非常|十分|太)?(谢谢|感谢|多谢|谢了|谢啦|thanks|thank you|thx)"
                           r"(你|您|你们|啦|了|哈)?(的帮助|帮忙)?)+$"),
        (SmallTalk.OK, r"^(好的|好|嗯|嗯嗯|哦|噢|ok|okay|收到|知道了|明白|明白了|了解|了解了|行)"
                       r"(的|吧|啦)?$"),
        (SmallTalk.BYE, r"^(再见|拜拜|bye|byebye|回头见)$"),
    )
)  # fmt: skip
_TRAILING = re.compile(r"[\s,，。.!！?？~～…]+$")


def small_talk_of(text: str) -> SmallTalk | None:
    """What kind of small talk *text* is (你好, 谢谢, 好的, 再见), or ``None``."""
    norm = _TRAILING.sub("", normalize(text))
    norm = re.sub(r"[\s,，、!！。]+", "", norm)
    for kind, pattern in _SMALL_TALK:
        if pattern.fullmatch(norm):
            return kind
    return None


_LOOSE_NUMBER = re.compile(r"^\s*yx[-_\s]*[\d\s-]{3,}$", re.IGNORECASE)
_MENU_WORDS = frozenset(
    {"菜单", "帮助", "功能", "查询", "进度", "绑定", "转人工", "人工", "提交诉求", "登记诉求",
     "取消", "确认", "确认提交", "满意", "基本满意", "不满意", "已解决", "未解决", "都不是"}
)  # fmt: skip


def describes_need(text: str) -> bool:
    """False for text that cannot be the description of a need: a (mistyped) ticket number,
    a menu or button word, a yes/no, a rating, small talk or a bare choice number."""
    norm = normalize(text).strip(" 。.!！?？")
    if not norm or not meaningful(norm):
        return False
    if _LOOSE_NUMBER.match(norm) or TICKET_NUMBER.fullmatch(norm):
        return False
    if norm in _MENU_WORDS or command_of(norm) is not None:
        return False
    if is_yes(norm) or is_no(norm) or rating_of(norm) or small_talk_of(norm):
        return False
    return parse_choice(norm) is None


_EDITS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (field, re.compile(pattern))
    for field, pattern in (
        ("description", r"^(edit:description|修改诉求|修改描述|修改内容|重新描述|重写诉求)"),
        ("detail", r"^(edit:detail|补充说明|补充内容|补充|追加说明|追加)"),
        ("enterprise", r"^(edit:enterprise|修改企业|更换企业|更正企业|企业填错了?)"),
        ("phone", r"^(edit:phone|修改电话|修改手机号?|更换电话|更正电话|电话填错了?|修改联系电话)"),
    )
)


def edit_of(text: str) -> tuple[str, str] | None:
    """A correction of a draft ticket: (field, new value or ``""``), or ``None``.

    ``修改电话 13800138000`` → ``("phone", "13800138000")``; ``补充说明`` → ``("detail", "")``.
    """
    stripped = text.strip()
    norm = normalize(stripped)
    for field, pattern in _EDITS:
        m = pattern.match(norm)
        if m:
            rest = stripped[len(m.group(0)) :] if len(norm) == len(stripped) else norm[m.end() :]
            return field, rest.lstrip(" :：，,为").strip()
    return None


_CHASE = re.compile(
    r"(没人|没有人|无人|没有专员|没有工作人员|还没有?人|一直没有?人?|迟迟没有?|怎么还没有?|至今没有?|到现在都?没有?)"
    r".{0,6}(联系|处理|回复|回应|答复|管|理|来电|打电话|对接|受理)"
)
_ABOUT_TICKET = re.compile(r"(诉求|工单|反映|提交|登记|申请|问题|yx-\d)")


def chases_ticket(text: str) -> bool:
    """True for a complaint that nobody has acted on a filed need (催办).

    ``我提交的诉求三天了还没人联系我``, ``工单一直没人处理``.
    """
    norm = normalize(text)
    return bool(_CHASE.search(norm) and _ABOUT_TICKET.search(norm))
