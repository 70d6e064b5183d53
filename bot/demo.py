"""`make demo`: a few sample questions through the knowledge base, as the bot answers them.

The dialogue issue turns this into the terminal chat; until then it shows the decisions.
"""

from __future__ import annotations

import knowledge
from bot.cli.kb import print_decision

__all__ = ["main"]

SAMPLE_QUESTIONS = (
    "营业执照丢了怎么补办",
    "诉求一般几个工作日能办结",
    "个体工商户归哪个部门服务",
    "疑难复杂问题怎么处理",
    "公司想注销",
    "明天会下雨吗",
    "转人工",
)


def main() -> None:
    """Answer the sample questions and print each decision."""
    kb = knowledge.load()
    print(f"有需必应助手 · 企业服务知识库已载入 {len(kb)} 条")
    for question in SAMPLE_QUESTIONS:
        print(f"\n企业：{question}")
        print_decision(kb.decide(question), prefix="助手：")


if __name__ == "__main__":
    main()
