"""Calico label selectors (libcalico-go lib/selector): parse once, match many label sets.

Grammar, loosest binding first:

    expr      := and ('||' and)*
    and       := operation ('&&' operation)*
    operation := '!'* ( 'all()' | 'global()' | 'has(' key ')' | '(' expr ')'
                      | key ('==' | '!=' | 'contains' | 'starts with' | 'ends with') string
                      | key ('in' | 'not in') '{' [string (',' string)*] '}' )

Strings are quoted with ' or " (no escapes); keys are [a-zA-Z0-9_./-]+. An empty selector
matches everything. A missing label satisfies `!=` and `not in` and nothing else, as in Calico.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Selector", "SelectorError", "parse"]


class SelectorError(ValueError):
    """A selector that does not parse; the message says what was expected where."""


class _Tok(enum.Enum):
    LABEL = "label"
    STRING = "string"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT = "!"
    NOT_IN = "not in"
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"
    ALL = "all()"
    GLOBAL = "global()"
    HAS = "has()"
    LPAREN = "("
    RPAREN = ")"
    AND = "&&"
    OR = "||"
    EOF = "end of selector"


_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WS = " \t"
_SIMPLE = {"(": _Tok.LPAREN, ")": _Tok.RPAREN, "{": _Tok.LBRACE, "}": _Tok.RBRACE, ",": _Tok.COMMA}
_LABEL_OPS = (
    ("contains", _Tok.CONTAINS, None),
    ("starts", _Tok.STARTS_WITH, "with"),
    ("ends", _Tok.ENDS_WITH, "with"),
    ("not", _Tok.NOT_IN, "in"),
    ("in", _Tok.IN, None),
)


def _key_prefix(text: str, pos: int) -> str:
    end = pos
    while end < len(text) and text[end] in _KEY_CHARS:
        end += 1
    return text[pos:end]


def _tokenize(text: str) -> list[tuple[_Tok, str]]:
    """Calico's tokenizer, including its context rule: right after a label only an operator
    word may follow, so `a in {...}` never reads `in` as a second label."""
    toks: list[tuple[_Tok, str]] = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            toks.append((_Tok.EOF, ""))
            return toks
        c = text[pos]
        last = toks[-1][0] if toks else None
        if c in _SIMPLE:
            toks.append((_SIMPLE[c], c))
            pos += 1
        elif c in "'\"":
            end = text.find(c, pos + 1)
            if end < 0:
                raise SelectorError(f"unterminated string at position {pos}")
            toks.append((_Tok.STRING, text[pos + 1 : end]))
            pos = end + 1
        elif c in "=&|":
            if text[pos + 1 : pos + 2] != c:
                raise SelectorError(f"expected {c * 2!r} at position {pos}")
            toks.append(({"=": _Tok.EQ, "&": _Tok.AND, "|": _Tok.OR}[c], c * 2))
            pos += 2
        elif c == "!":
            if text[pos + 1 : pos + 2] == "=":
                toks.append((_Tok.NE, "!="))
                pos += 2
            else:
                toks.append((_Tok.NOT, "!"))
                pos += 1
        elif last is _Tok.LABEL:
            for word, kind, second in _LABEL_OPS:
                if text.startswith(word, pos):
                    pos += len(word)
                    if second is not None:
                        while pos < n and text[pos] in _WS:
                            pos += 1
                        if not text.startswith(second, pos):
                            break
                        pos += len(second)
                    toks.append((kind, kind.value))
                    break
            else:
                raise SelectorError(
                    f"expected an operator after label {toks[-1][1]!r} at position {pos}"
                )
            if toks[-1][0] is _Tok.LABEL:
                raise SelectorError(
                    f"expected an operator after label {toks[-1][1]!r} at position {pos}"
                )
        elif text.startswith("has(", pos):
            pos += 4
            while pos < n and text[pos] in _WS:
                pos += 1
            key = _key_prefix(text, pos)
            if not key:
                raise SelectorError(f"expected a label name in has( at position {pos}")
            pos += len(key)
            while pos < n and text[pos] in _WS:
                pos += 1
            if text[pos : pos + 1] != ")":
                raise SelectorError(f"expected ')' after has({key} at position {pos}")
            toks.append((_Tok.HAS, key))
            pos += 1
        elif text.startswith(("all(", "global("), pos):
            word = "all" if text.startswith("all(", pos) else "global"
            pos += len(word) + 1
            while pos < n and text[pos] in _WS:
                pos += 1
            if text[pos : pos + 1] != ")":
                raise SelectorError(f"expected ')' after {word}( at position {pos}")
            toks.append((_Tok.ALL if word == "all" else _Tok.GLOBAL, f"{word}()"))
            pos += 1
        else:
            key = _key_prefix(text, pos)
            if not key:
                raise SelectorError(f"unexpected character {c!r} at position {pos}")
            toks.append((_Tok.LABEL, key))
            pos += len(key)


# --- the tree: each node is a frozen value with `matches(labels)` -------------------------


@dataclass(frozen=True, slots=True)
class _All:
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class _Global:
    """Calico's global(): the resource is not namespaced. Node labels never carry the
    namespace label, so for nodes this is all()."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return "projectcalico.org/namespace" not in labels

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class _Has:
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


def _quote(value: str) -> str:
    return f"'{value}'" if '"' in value else f'"{value}"'


@dataclass(frozen=True, slots=True)
class _Compare:
    key: str
    op: _Tok
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        if got is None:
            return self.op is _Tok.NE
        match self.op:
            case _Tok.EQ:
                return got == self.value
            case _Tok.NE:
                return got != self.value
            case _Tok.CONTAINS:
                return self.value in got
            case _Tok.STARTS_WITH:
                return got.startswith(self.value)
            case _:
                return got.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op.value} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class _InSet:
    key: str
    values: frozenset[str]
    negated: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.key)
        if got is None:
            return self.negated
        return (got in self.values) != self.negated

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.key} {op} {{{', '.join(_quote(v) for v in sorted(self.values))}}}"


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class _And:
    operands: tuple[_Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(o) for o in self.operands) + ")"


@dataclass(frozen=True, slots=True)
class _Or:
    operands: tuple[_Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(o) for o in self.operands) + ")"


_Node = _All | _Global | _Has | _Compare | _InSet | _Not | _And | _Or

_COMPARE_OPS = frozenset({_Tok.EQ, _Tok.NE, _Tok.CONTAINS, _Tok.STARTS_WITH, _Tok.ENDS_WITH})


class _Parser:
    def __init__(self, toks: list[tuple[_Tok, str]]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i][0]

    def take(self) -> tuple[_Tok, str]:
        tok = self.toks[self.i]
        if tok[0] is not _Tok.EOF:
            self.i += 1
        return tok

    def expect(self, kind: _Tok, what: str) -> str:
        got, value = self.take()
        if got is not kind:
            raise SelectorError(f"expected {what}, found {got.value!r}")
        return value

    def or_expr(self) -> _Node:
        terms = [self.and_expr()]
        while self.peek() is _Tok.OR:
            self.take()
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else _Or(tuple(terms))

    def and_expr(self) -> _Node:
        terms = [self.operation()]
        while self.peek() is _Tok.AND:
            self.take()
            terms.append(self.operation())
        return terms[0] if len(terms) == 1 else _And(tuple(terms))

    def operation(self) -> _Node:
        negated = False
        while self.peek() is _Tok.NOT:
            self.take()
            negated = not negated
        kind, value = self.take()
        node: _Node
        if kind is _Tok.ALL:
            node = _All()
        elif kind is _Tok.GLOBAL:
            node = _Global()
        elif kind is _Tok.HAS:
            node = _Has(value)
        elif kind is _Tok.LPAREN:
            node = self.or_expr()
            self.expect(_Tok.RPAREN, "')'")
        elif kind is _Tok.LABEL:
            op, _ = self.take()
            if op in _COMPARE_OPS:
                node = _Compare(value, op, self.expect(_Tok.STRING, "a quoted string"))
            elif op in (_Tok.IN, _Tok.NOT_IN):
                self.expect(_Tok.LBRACE, "'{'")
                values: list[str] = []
                while self.peek() is _Tok.STRING:
                    values.append(self.take()[1])
                    if self.peek() is not _Tok.COMMA:
                        break
                    self.take()
                self.expect(_Tok.RBRACE, "'}'")
                node = _InSet(value, frozenset(values), op is _Tok.NOT_IN)
            else:
                raise SelectorError(f"expected an operator after label {value!r}")
        else:
            raise SelectorError(f"unexpected {kind.value!r}")
        return _Not(node) if negated else node


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector; `text` is what it was parsed from."""

    text: str
    root: _Node

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.root.matches(labels)

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Selector:
    """Parse a Calico selector; raises SelectorError. Results are cached (they are values)."""
    toks = _tokenize(text)
    if toks[0][0] is _Tok.EOF:
        return Selector(text, _All())
    parser = _Parser(toks)
    root = parser.or_expr()
    if parser.peek() is not _Tok.EOF:
        raise SelectorError(f"unexpected {parser.peek().value!r} after a complete selector")
    return Selector(text, root)
