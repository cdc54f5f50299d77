"""BIRD's reply lines (nest/cli.c `cli_printf`): a four-digit code, then '-' when more lines
of the reply follow or ' ' on its last line, then the text. A continuation line whose code is
the same as the line before it starts with a single space instead of the code. Codes: 0xxx
done, 1xxx table entry, 2xxx table heading, 8xxx run-time error, 9xxx parse error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# doc/reply_codes
OK = 0
HELLO = 1
RESTRICTED = 16
STATUS = 13
ROUTE_COUNT = 14
GR_STATUS = 24
VERSION = 1000
PROTOCOLS = 1002
PROTOCOL_DETAILS = 1006
ROUTES = 1007
ROUTE_DETAILS = 1008
UPTIME = 1011
ROUTE_ATTRIBUTES = 1012
MEMORY = 1018
BFD_SESSIONS = 1020
PROTOCOLS_HEADING = 2002
NOT_FOUND = 8001
NO_MATCH = 8003
ACCESS_DENIED = 8007
COMMAND_TOO_LONG = 9000
PARSE_ERROR = 9001
INVALID_SYMBOL = 9002

# BIRD's CLI_LINE_SIZE less the code and the newline; a longer line is BIRD's "<line overflow>".
MAX_TEXT = 1024 - 7


@dataclass(slots=True)
class ReplyWriter:
    """One connection's reply stream. `more(code, text)` adds a line with more to come,
    `last(code, text)` ends the reply. The code of the previous line is kept across replies,
    as BIRD keeps it per connection."""

    last_code: int = -1
    _lines: list[str] = field(default_factory=list)

    def more(self, code: int, text: str = "") -> None:
        prefix = " " if code == self.last_code else f"{code:04d}-"
        self._add(code, prefix, text)

    def last(self, code: int, text: str = "") -> None:
        self._add(code, f"{code:04d} ", text)

    def _add(self, code: int, prefix: str, text: str) -> None:
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
        self.last_code = code
        self._lines.append(prefix + text + "\n")

    def take(self) -> bytes:
        """Everything written since the last take, as bytes for the socket."""
        out = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        return out
