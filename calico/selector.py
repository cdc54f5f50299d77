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
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "Selector",
    "SelectorError",
    "combine",
    "equals",
    "parse",
    "required_label",
    "with_label_prefix",
]


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


def _source(node: _Node, names: Iterator[int]) -> str:
    """A Python expression over `L` (the labels) that is true when `node` matches."""
    if isinstance(node, _All):
        return "True"
    if isinstance(node, _Global):
        return "'projectcalico.org/namespace' not in L"
    if isinstance(node, _Has):
        return f"({node.key!r} in L)"
    if isinstance(node, _Compare):
        key, value = repr(node.key), repr(node.value)
        if node.op is _Tok.EQ:
            return f"(L.get({key}) == {value})"
        if node.op is _Tok.NE:
            return f"(L.get({key}) != {value})"
        var = f"_v{next(names)}"
        test = {
            _Tok.CONTAINS: f"{value} in {var}",
            _Tok.STARTS_WITH: f"{var}.startswith({value})",
            _Tok.ENDS_WITH: f"{var}.endswith({value})",
        }[node.op]
        return f"(({var} := L.get({key})) is not None and {test})"
    if isinstance(node, _InSet):
        values = repr(frozenset(node.values))
        return f"(L.get({node.key!r}) {'not in' if node.negated else 'in'} {values})"
    if isinstance(node, _Not):
        return f"(not {_source(node.operand, names)})"
    joiner = " and " if isinstance(node, _And) else " or "
    return "(" + joiner.join(_source(o, names) for o in node.operands) + ")"


def _compile(root: _Node) -> Callable[[Mapping[str, str]], bool]:
    """The selector as one Python function: many times faster than walking the tree, and
    selectors are matched against every endpoint's labels on every label change."""
    code = "lambda L: " + _source(root, itertools.count())
    fn: Callable[[Mapping[str, str]], bool] = eval(code, {"__builtins__": {"frozenset": frozenset}})
    return fn


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector; `text` is what it was parsed from."""

    text: str
    root: _Node
    _fn: Callable[[Mapping[str, str]], bool] | None = field(
        default=None, compare=False, hash=False, repr=False
    )
    _key: str | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        """The canonical text of the tree: equal selectors have equal keys."""
        key = self._key
        if key is None:
            key = str(self.root)
            object.__setattr__(self, "_key", key)
        return key

    def matches(self, labels: Mapping[str, str]) -> bool:
        fn = self._fn
        if fn is None:
            fn = _compile(self.root)
            object.__setattr__(self, "_fn", fn)
        return fn(labels)

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


# --- rewriting (Calico's PrefixVisitor and its all()/global() substitutions) -----------------


def _rewrite(node: _Node, prefix: str, all_to: _Node | None, global_to: _Node | None) -> _Node:
    if isinstance(node, _All):
        return all_to or node
    if isinstance(node, _Global):
        return global_to or node
    if isinstance(node, _Has):
        return _Has(prefix + node.key)
    if isinstance(node, _Compare):
        return _Compare(prefix + node.key, node.op, node.value)
    if isinstance(node, _InSet):
        return _InSet(prefix + node.key, node.values, node.negated)
    if isinstance(node, _Not):
        return _Not(_rewrite(node.operand, prefix, all_to, global_to))
    if isinstance(node, _And):
        return _And(tuple(_rewrite(o, prefix, all_to, global_to) for o in node.operands))
    return _Or(tuple(_rewrite(o, prefix, all_to, global_to) for o in node.operands))


def with_label_prefix(
    sel: Selector, prefix: str, *, all_means_has: str | None = None,
    global_means_not_has: str | None = None,
) -> Selector:
    """`sel` with every label key prefixed (`k == 'v'` becomes `pcns.k == 'v'`), as Calico
    turns a namespaceSelector into a selector on the labels a namespace's profile gives its
    endpoints. `all_means_has` turns all() into has(<that label>) and `global_means_not_has`
    global() into !has(<that label>) (Calico: "all namespaces" means "in some namespace")."""
    all_to = _Has(all_means_has) if all_means_has else None
    global_to = _Not(_Has(global_means_not_has)) if global_means_not_has else None
    root = _rewrite(sel.root, prefix, all_to, global_to)
    return Selector(str(root), root)


def combine(*selectors: Selector) -> Selector:
    """The conjunction of `selectors` (an empty list is all())."""
    parts = [s.root for s in selectors if not isinstance(s.root, _All)]
    if not parts:
        return Selector("all()", _All())
    root: _Node = parts[0] if len(parts) == 1 else _And(tuple(parts))
    return Selector(str(root), root)


def equals(key: str, value: str) -> Selector:
    """The selector `key == 'value'`."""
    root = _Compare(key, _Tok.EQ, value)
    return Selector(str(root), root)


def required_label(sel: Selector) -> tuple[str, str] | None:
    """A (key, value) every label set the selector matches has, if its top-level
    conjunction contains `key == 'value'`: lets an index skip selectors an endpoint
    cannot match."""
    stack: list[_Node] = [sel.root]
    while stack:
        node = stack.pop()
        if isinstance(node, _Compare) and node.op is _Tok.EQ:
            return (node.key, node.value)
        if isinstance(node, _And):
            stack.extend(reversed(node.operands))
    return None
