"""The 企业服务知识库: YAML entries, jieba tokenizer, BM25 index, search and decision.

No database, no channel library.
"""

from knowledge.base import Action, Decision, Hit, KnowledgeBase, load
from knowledge.schema import Entry, Source

__all__ = ["Action", "Decision", "Entry", "Hit", "KnowledgeBase", "Source", "load"]
