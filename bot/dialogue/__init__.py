"""The dialogue: one conversation engine for every channel, as a table of small handlers.

* :mod:`~bot.dialogue.states` — the states, the transition table, ``Turn`` and ``Outcome``;
* :mod:`~bot.dialogue.engine` — dedupe, the transaction, the turn log, the ordered dispatch,
  and the only place a conversation's state is written;
* one module per concern: :mod:`~bot.dialogue.questions` (answers, choices, "did it help?"),
  :mod:`~bot.dialogue.filing` (a ticket), :mod:`~bot.dialogue.rating`,
  :mod:`~bot.dialogue.person` (waiting for and talking with a person),
  :mod:`~bot.dialogue.commands`, :mod:`~bot.dialogue.staff` (a commissioner's chat).
"""

from bot.dialogue.engine import HANDLERS, Dialogue
from bot.dialogue.states import TRANSITIONS, IllegalConversationMove, Outcome, State, Turn

__all__ = ["HANDLERS", "TRANSITIONS", "Dialogue", "IllegalConversationMove", "Outcome", "State",
           "Turn"]  # fmt: skip
