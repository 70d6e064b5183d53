"""Core shared by every layer of 有需必应助手: the error tree, paths and typed YAML config.

This package imports none of ``knowledge``, ``routing``, ``handoff`` or ``bot``; they all
import it.
"""

from yxby.errors import ConfigError, KnowledgeError, TicketError, YxbyError

__all__ = ["ConfigError", "KnowledgeError", "TicketError", "YxbyError"]
__version__ = "0.1.0"
