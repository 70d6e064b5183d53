"""Conversations: internal message types, the dialogue engine, channel adapters and the CLI."""
