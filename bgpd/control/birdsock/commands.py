"""BIRD CLI command lines -> commands, for the read-only subset bgpd answers.

The words are BIRD's grammar (nest/config.Y): `show status`, `show memory`, `show protocols
[all] [<protocol> | "<pattern>"]`, `show route [<prefix> | for <prefix or ip>] [table <t>]
[all] [primary] [(export) <p>] [protocol <p>] [stats | count]`, `show bfd sessions` and
`restrict`. Commands that change state (configure, disable, enable, restart, reload, debug,
down, ...) parse as `Denied`: this socket never changes anything, and answers them as a
restricted BIRD CLI does. BIRD does not expand abbreviations on its socket (its clients do),
so neither does this parser.

Symbols (protocol and table names) are checked later against the daemon's state, since they
change; the parser only says where one stands.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from bgpd.control.birdsock.replies import PARSE_ERROR


class CliError(Exception):
    """A reply of one line: an error code and its text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical unit, as BIRD's lexer (conf/cf-lex.l) sees it: kind is "word" (keyword
    or symbol), "text" (a double-quoted string), "prefix", "ip" or "num"."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class ShowStatus:
    pass


@dataclass(frozen=True, slots=True)
class ShowMemory:
    pass


@dataclass(frozen=True, slots=True)
class ShowProtocols:
    """`name` is a protocol symbol, `pattern` a quoted shell pattern; neither: all."""

    full: bool
    name: str | None = None
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class ShowRoute:
    """`prefix` is canonical; `longest` marks `for` (longest match, BIRD's net_route) as
    opposed to the exact prefix (net_find). `stats` is 0, 1 (`stats`: routes then the count)
    or 2 (`count`: the count only)."""

    prefix: str | None = None
    longest: bool = False
    table: str | None = None
    full: bool = False
    primary: bool = False
    export: str | None = None
    protocol: str | None = None
    stats: int = 0


@dataclass(frozen=True, slots=True)
class ShowBfdSessions:
    pass


@dataclass(frozen=True, slots=True)
class Restrict:
    pass


@dataclass(frozen=True, slots=True)
class Denied:
    """A command that would change the daemon: `what` is its first word."""

    what: str


Command = ShowStatus | ShowMemory | ShowProtocols | ShowRoute | ShowBfdSessions | Restrict | Denied

# Commands that act (BIRD checks cli_access_restricted() in each): refused, never parsed on.
MUTATING = frozenset(
    {"configure", "disable", "enable", "restart", "reload", "debug", "mrtdump", "down",
     "graceful", "echo", "dump", "add", "delete", "flush", "eval", "timeformat"}
)
# BIRD `show` subcommands bgpd does not implement; refused with a clear message.
UNIMPLEMENTED_SHOW = frozenset(
    {"interfaces", "ospf", "rip", "static", "symbols", "roa", "babel", "rpki", "mrt",
     "bfd"}
)
# Every keyword the grammar uses here: a keyword is never taken for a symbol.
KEYWORDS = frozenset(
    {"show", "status", "memory", "protocols", "all", "route", "for", "table", "primary",
     "filtered", "export", "preexport", "noexport", "protocol", "stats", "count", "filter",
     "where", "restrict", "sessions", "proto"}
) | MUTATING | UNIMPLEMENTED_SHOW

_TOKEN = re.compile(r'\s*(?:"(?P<text>[^"\n]*)"|(?P<bad>"[^"\n]*$)|(?P<atom>[^\s"]+))')
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z0-9_\-.:]*'")


def tokenize(line: str) -> list[Token]:
    """The line's tokens; CliError(9001) for what BIRD's lexer refuses."""
    # "10.0.0.0 / 24" is one prefix to BIRD's grammar (IPA '/' NUM).
    line = re.sub(r"\s*/\s*", "/", line.strip())
    tokens: list[Token] = []
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        if m.group("bad") is not None:
            raise CliError(PARSE_ERROR, "Unterminated string")
        if m.group("text") is not None:
            tokens.append(Token("text", m.group("text")))
            continue
        tokens.append(_classify(m.group("atom")))
    return tokens


def _classify(atom: str) -> Token:
    if atom.isdigit():
        return Token("num", atom)
    if "/" in atom:
        try:
            return Token("prefix", str(ipaddress.ip_network(atom, strict=False)))
        except ValueError:
            raise CliError(PARSE_ERROR, "syntax error") from None
    try:
        return Token("ip", str(ipaddress.ip_address(atom)))
    except ValueError:
        pass
    if _WORD.fullmatch(atom):
        return Token("word", atom.strip("'"))
    # Operators and the like: valid to BIRD's lexer, never in the commands answered here.
    return Token("other", atom)


class _Cursor:
    __slots__ = ("pos", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token | None:
        token = self.peek()
        if token is not None:
            self.pos += 1
        return token

    def keyword(self, *words: str) -> str | None:
        """The next token if it is one of `words` (consumed), else None."""
        token = self.peek()
        if token is not None and token.kind == "word" and token.value in words:
            self.pos += 1
            return token.value
        return None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)


@dataclass(frozen=True, slots=True)
class Unexpected:
    """Where the parse failed, for the dialect to word the error as its BIRD would: the
    token (None at the end of the line) and what the grammar wanted there."""

    token: Token | None
    expecting: tuple[str, ...] = ()


class ParseFailure(Exception):
    def __init__(self, where: Unexpected) -> None:
        super().__init__(where)
        self.where = where


class Rule(Exception):
    """A grammar action's own error (cf_error in BIRD), worded the same in every dialect."""


def parse(line: str) -> Command:
    """One command line -> a Command; ParseFailure / Rule / CliError say why not."""
    cur = _Cursor(tokenize(line))
    first = cur.take()
    if first is None:
        raise ParseFailure(Unexpected(None))
    if first.kind != "word":
        raise ParseFailure(Unexpected(first))
    if first.value in MUTATING:
        return Denied(first.value)
    if first.value == "restrict":
        _end(cur)
        return Restrict()
    if first.value != "show":
        raise ParseFailure(Unexpected(first))
    what = cur.take()
    if what is None or what.kind != "word":
        raise ParseFailure(Unexpected(what))
    if what.value == "status":
        _end(cur)
        return ShowStatus()
    if what.value == "memory":
        _end(cur)
        return ShowMemory()
    if what.value == "protocols":
        return _show_protocols(cur)
    if what.value == "route":
        return _show_route(cur)
    if what.value == "bfd" and cur.keyword("sessions"):
        _end(cur)
        return ShowBfdSessions()
    if what.value in UNIMPLEMENTED_SHOW:
        raise CliError(PARSE_ERROR, f"syntax error, 'show {what.value}' is not implemented by bgpd")
    raise ParseFailure(Unexpected(what))


def _end(cur: _Cursor) -> None:
    if not cur.at_end():
        raise ParseFailure(Unexpected(cur.peek(), ("END",)))


def _symbol(cur: _Cursor, expecting: tuple[str, ...] = ("CF_SYM_KNOWN",)) -> str:
    token = cur.take()
    if token is None or token.kind != "word" or token.value in KEYWORDS:
        raise ParseFailure(Unexpected(token, expecting))
    return token.value


def _show_protocols(cur: _Cursor) -> ShowProtocols:
    full = cur.keyword("all") is not None
    token = cur.peek()
    if token is None:
        return ShowProtocols(full)
    if token.kind == "text":
        cur.take()
        _end(cur)
        return ShowProtocols(full, pattern=token.value)
    expecting = ("END", "CF_SYM_KNOWN", "TEXT") + (() if full else ("ALL",))
    name = _symbol(cur, expecting)
    _end(cur)
    return ShowProtocols(full, name=name)


def _show_route(cur: _Cursor) -> ShowRoute:
    prefix: str | None = None
    longest = False
    table = export = protocol = None
    full = primary = False
    stats = 0
    while not cur.at_end():
        token = cur.peek()
        assert token is not None
        if token.kind in ("prefix", "ip"):
            cur.take()
            if token.kind == "ip":
                # Without `for`, BIRD's grammar wants a prefix: an address must go on "/len".
                raise ParseFailure(Unexpected(cur.peek(), ("'/'",)))
            if prefix is not None:
                raise Rule("Only one prefix expected")
            prefix, longest = token.value, False
            continue
        word = cur.keyword(
            "for", "table", "all", "primary", "export", "protocol", "stats", "count",
            "filter", "where", "filtered", "preexport", "noexport",
        )
        if word is None:
            raise ParseFailure(Unexpected(token))
        if word == "for":
            target = cur.take()
            if target is None or target.kind not in ("prefix", "ip"):
                raise ParseFailure(Unexpected(target))
            if prefix is not None:
                raise Rule("Only one prefix expected")
            prefix, longest = _host(target), True
        elif word == "table":
            table = _symbol(cur, ("CF_SYM_KNOWN", "ALL"))
        elif word == "all":
            full = True
        elif word == "primary":
            primary = True
        elif word == "export":
            if export is not None:
                raise Rule("Protocol specified twice")
            export = _symbol(cur)
        elif word == "protocol":
            if protocol is not None:
                raise Rule("Protocol specified twice")
            protocol = _symbol(cur)
        elif word == "stats":
            stats = 1
        elif word == "count":
            stats = 2
        else:
            raise CliError(
                PARSE_ERROR, f"syntax error, 'show route {word}' is not implemented by bgpd"
            )
    return ShowRoute(prefix, longest, table, full, primary, export, protocol, stats)


def _host(token: Token) -> str:
    if token.kind == "prefix":
        return token.value
    return str(ipaddress.ip_network(token.value))
