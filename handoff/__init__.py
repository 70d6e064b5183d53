"""Everything after "the bot could not settle it": database, tickets, SLA clocks, outbox,
working-day calendar and the enterprise registry (一企一档).

Modules are imported explicitly (``from handoff.tickets import TicketService``) so that
importing this package stays cheap; nothing here imports a channel library.
"""

__all__: list[str] = []
