"""How much output a peer may leave unread: imported by the command line for its default, so
it holds nothing else (no asyncio, no codec)."""

MAX_BUFFERED = 64 << 20
"""Bytes queued for one connection beyond which its peer is taken as not reading: reset."""
