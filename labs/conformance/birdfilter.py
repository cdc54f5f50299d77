"""BIRD 1.6's filter language, as much of it as confd's golden files use, run on one route.

Parsed from the golden text itself: `function` definitions (the BGPFilter functions,
calico_export_to_bgp_peers, calico_aggr, ...) and each `protocol bgp`'s `import filter { }` /
`export filter { }`. Statements: if/then/else, blocks, accept, reject, return, assignment
to route attributes, `.add(...)` on community sets, `.prepend(...)` on the AS path, function
calls with bool arguments. Expressions: `~ !~ = != < > <= >=`, `&& || !`, `+ -`, defined(),
prefixes, prefix sets `[ p{a,b} ]`, enum sets `[ RTS_BGP ]`, pairs and triples, AS path masks
`[= a b * =]`, strings (patterns with `*` and `?`), ints, true/false.

BIRD's semantics that matter here, from filter/filter.c of BIRD 1.6 (and Calico's fork of it):
accept and reject end the whole filter even inside a function; a run-time error (comparing
values of different types, e.g. a prefix `=` a prefix set) ends it too and the route is
rejected; `ifname` is always defined ("" for a route without an interface); reading an absent
community attribute gives the empty set; comparing anything with an undefined value is false.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCEPT = "accept"
REJECT = "reject"
ERROR = "error"


class BirdError(Exception):
    """A run-time error in the filter: BIRD rejects the route."""


class ParseError(Exception):
    pass


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prefix:
    version: int
    addr: int
    plen: int

    @classmethod
    def of(cls, text: str) -> Prefix:
        net = ipaddress.ip_network(text, strict=False)
        return cls(net.version, int(net.network_address), net.prefixlen)

    def width(self) -> int:
        return 32 if self.version == 4 else 128

    def within(self, outer: Prefix, lo: int | None = None, hi: int | None = None) -> bool:
        if self.version != outer.version:
            return False
        lo = outer.plen if lo is None else lo
        hi = self.width() if hi is None else hi
        if not lo <= self.plen <= hi or self.plen < outer.plen:
            return False
        shift = self.width() - outer.plen
        return self.addr >> shift == outer.addr >> shift


@dataclass(frozen=True, slots=True)
class PrefixSet:
    items: tuple[tuple[Prefix, int, int], ...]

    def contains(self, p: Prefix) -> bool:
        return any(p.within(net, lo, hi) for net, lo, hi in self.items)


@dataclass(frozen=True, slots=True)
class EnumSet:
    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class PathMask:
    items: tuple[int | str, ...]  # ints and "*"


@dataclass(frozen=True, slots=True)
class Symbol:
    """An enum constant (RTS_BGP) or a name not otherwise known."""

    name: str


VOID: Any = None


@dataclass
class RouteState:
    """A route as a filter sees it. Absent keys are undefined attributes."""

    attrs: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name == "ifname":
            return self.attrs.get("ifname", "")  # BIRD: always defined, "" without one
        if name in ("bgp_community", "bgp_large_community"):
            return tuple(self.attrs.get(name, ()))
        return self.attrs.get(name, VOID)

    def copy(self) -> RouteState:
        return RouteState(dict(self.attrs))


# --- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"[^"]*")
  | (?P<qsym>'[^']*')
  | (?P<p6>[0-9a-fA-F]*:[0-9a-fA-F:.]*/\d+)
  | (?P<p4>\d+\.\d+\.\d+\.\d+/\d+)
  | (?P<ip4>\d+\.\d+\.\d+\.\d+)
  | (?P<num>\d+)
  | (?P<op>&&|\|\||!=|!~|<=|>=|\[=|=\]|[-+*/(){}\[\];,.=~<>!])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.X,
)


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"cannot read {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind == "ws":
            continue
        out.append(Tok(kind, m.group()))
    return out


# --- syntax -------------------------------------------------------------------------------

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.text == text

    def take(self, text: str | None = None) -> Tok:
        t = self.peek()
        if t is None:
            raise ParseError(f"unexpected end, wanted {text!r}")
        if text is not None and t.text != text:
            raise ParseError(f"wanted {text!r}, found {t.text!r}")
        self.i += 1
        return t

    def done(self) -> bool:
        return self.i >= len(self.toks)

    # statements
    def block(self) -> list[Node]:
        self.take("{")
        body: list[Node] = []
        while not self.at("}"):
            body.append(self.statement())
        self.take("}")
        return body

    def statement(self) -> Node:
        t = self.peek()
        assert t is not None
        if t.text == "{":
            return ("block", self.block())
        if t.text == "if":
            self.take("if")
            cond = self.expr()
            self.take("then")
            then = self.statement()
            other: Node | None = None
            if self.at("else"):
                self.take("else")
                other = self.statement()
            return ("if", cond, then, other)
        if t.text in ("accept", "reject"):
            self.take()
            self.take(";")
            return (t.text,)
        if t.text == "return":
            self.take()
            value = None if self.at(";") else self.expr()
            self.take(";")
            return ("return", value)
        if t.kind in ("name", "qsym"):
            name = self.take().text.strip("'")
            if self.at("="):
                self.take("=")
                value = self.expr()
                self.take(";")
                return ("set", name, value)
            if self.at("."):
                self.take(".")
                method = self.take().text
                args = self.args()
                self.take(";")
                return ("method", name, method, args)
            if self.at("("):
                args = self.args()
                self.take(";")
                return ("call", name, args)
        raise ParseError(f"cannot read a statement at {t.text!r}")

    def args(self) -> list[Node]:
        self.take("(")
        out: list[Node] = []
        while not self.at(")"):
            out.append(self.expr())
            if self.at(","):
                self.take(",")
        self.take(")")
        return out

    # expressions, loosest first
    def expr(self) -> Node:
        left = self.conj()
        while self.at("||"):
            self.take()
            left = ("or", left, self.conj())
        return left

    def conj(self) -> Node:
        left = self.comparison()
        while self.at("&&"):
            self.take()
            left = ("and", left, self.comparison())
        return left

    def comparison(self) -> Node:
        left = self.additive()
        t = self.peek()
        if t is not None and t.text in ("=", "!=", "~", "!~", "<", ">", "<=", ">="):
            self.take()
            return ("cmp", t.text, left, self.additive())
        return left

    def additive(self) -> Node:
        left = self.unary()
        while self.at("+") or self.at("-"):
            op = self.take().text
            left = ("arith", op, left, self.unary())
        return left

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            return ("not", self.unary())
        return self.primary()

    def primary(self) -> Node:
        t = self.take()
        if t.text == "(":
            first = self.expr()
            if self.at(","):
                parts = [first]
                while self.at(","):
                    self.take(",")
                    parts.append(self.expr())
                self.take(")")
                return ("tuple", parts)
            self.take(")")
            return first
        if t.text == "[=":
            items: list[int | str] = []
            while not self.at("=]"):
                x = self.take()
                items.append(int(x.text) if x.kind == "num" else x.text)
            self.take("=]")
            return ("const", PathMask(tuple(items)))
        if t.text == "[":
            return ("const", self.set_body())
        if t.kind == "num":
            return ("const", int(t.text))
        if t.kind in ("p4", "p6"):
            return ("const", Prefix.of(t.text))
        if t.kind == "str":
            return ("const", t.text[1:-1])
        if t.kind == "name":
            if t.text == "defined":
                self.take("(")
                inner = self.expr()
                self.take(")")
                return ("defined", inner)
            if t.text in ("true", "false"):
                return ("const", t.text == "true")
            return ("name", t.text)
        raise ParseError(f"cannot read an expression at {t.text!r}")

    def set_body(self) -> Any:
        prefixes: list[tuple[Prefix, int, int]] = []
        names: list[str] = []
        while not self.at("]"):
            t = self.take()
            if t.kind in ("p4", "p6"):
                p = Prefix.of(t.text)
                lo, hi = p.plen, p.plen
                if self.at("{"):
                    self.take("{")
                    lo = int(self.take().text)
                    self.take(",")
                    hi = int(self.take().text)
                    self.take("}")
                elif self.at("+"):
                    self.take("+")
                    hi = p.width()
                prefixes.append((p, lo, hi))
            elif t.kind == "name":
                names.append(t.text)
            if self.at(","):
                self.take(",")
        self.take("]")
        if names:
            return EnumSet(frozenset(names))
        return PrefixSet(tuple(prefixes))


# --- the configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Function:
    params: tuple[str, ...]
    body: list[Node]


@dataclass
class BirdConfig:
    """The functions and the BGP protocols' filters of one golden bird.cfg (with its
    includes), and the parts of each protocol the filters' callers need."""

    functions: dict[str, Function] = field(default_factory=dict)
    imports: dict[str, list[Node]] = field(default_factory=dict)
    exports: dict[str, list[Node]] = field(default_factory=dict)
    neighbors: dict[str, tuple[str, int]] = field(default_factory=dict)
    local_as: dict[str, int] = field(default_factory=dict)
    rr_clients: set[str] = field(default_factory=set)
    template_as: int | None = None
    direct_interfaces: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> BirdConfig:
        cfg = cls()
        text = path.read_text()
        for inc in re.findall(r'^include "([^"]+)";', text, re.M):
            text += "\n" + (path.parent / inc).read_text()
        cfg._read(text)
        return cfg

    def _read(self, text: str) -> None:
        for m in re.finditer(r"(?m)^\s*function\s+('[^']+'|\w+)\s*\(([^)]*)\)\s*\{", text):
            name = m.group(1).strip("'")
            params = tuple(p.split()[-1] for p in m.group(2).split(",") if p.strip())
            body_text = _braced(text, m.end() - 1)
            self.functions[name] = Function(params, _Parser(tokenize(body_text)).block())
        template = re.search(r"template bgp bgp_template \{(.*?)\n\}", text, re.S)
        if template and (a := re.search(r"local as (\d+);", template.group(1))):
            self.template_as = int(a.group(1))
        direct = re.search(r"template direct direct_template \{(.*?)\n\}", text, re.S)
        if direct and (i := re.search(r"interface ([^;]*);", direct.group(1))):
            self.direct_interfaces = [s.strip() for s in i.group(1).split(",")]
        for m in re.finditer(r"(?m)^protocol bgp (\S+) from bgp_template \{", text):
            name = m.group(1)
            body = _braced(text, m.end() - 1)
            if n := re.search(r"neighbor (\S+)(?: port \d+)? as (\d+);", body):
                self.neighbors[name] = (n.group(1), int(n.group(2)))
            if a := re.search(r"(?m)^\s*local as (\d+);", body):
                self.local_as[name] = int(a.group(1))
            if "rr client;" in body:
                self.rr_clients.add(name)
            for direction, table in (("import", self.imports), ("export", self.exports)):
                f = re.search(direction + r" filter \{", body)
                if f is not None:
                    table[name] = _Parser(tokenize(_braced(body, f.end() - 1))).block()

    def peer_as(self, protocol: str) -> int:
        return self.neighbors[protocol][1]

    def our_as(self, protocol: str) -> int:
        got = self.local_as.get(protocol, self.template_as)
        assert got is not None
        return got


def _braced(text: str, start: int) -> str:
    """The text from the `{` at `start` to its matching `}`, both included."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise ParseError("unbalanced braces")


# --- running ------------------------------------------------------------------------------


class _Done(Exception):
    def __init__(self, verdict: str) -> None:
        self.verdict = verdict


class _Return(Exception):
    pass


def _pattern(pattern: str, text: str) -> bool:
    # BIRD's patmatch: * and ? only.
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))


def _path_match(path: Sequence[Any], mask: PathMask) -> bool:
    """BIRD's `bgp_path ~ [= ... =]` for the masks confd writes: ASNs then `*`."""
    positions: list[Any] = list(path)
    items = list(mask.items)

    def match(i: int, j: int) -> bool:
        if j == len(items):
            return i == len(positions)
        item = items[j]
        if item == "*":
            return any(match(k, j + 1) for k in range(i, len(positions) + 1))
        if i == len(positions):
            return False
        here = positions[i]
        ok = item in here if isinstance(here, frozenset) else here == item
        return ok and match(i + 1, j + 1)

    return match(0, 0)


class Interpreter:
    def __init__(self, config: BirdConfig) -> None:
        self.config = config

    def run(self, body: list[Node], route: RouteState) -> tuple[str, RouteState]:
        """Run a filter body on a copy of `route`: (verdict, the route as it leaves)."""
        state = route.copy()
        try:
            self._stmts(body, state, {})
        except _Done as done:
            return done.verdict, state
        except BirdError:
            return ERROR, state
        return REJECT, state  # falling off a filter's end rejects

    def _stmts(self, body: list[Node], r: RouteState, env: dict[str, Any]) -> None:
        for stmt in body:
            self._stmt(stmt, r, env)

    def _stmt(self, s: Node, r: RouteState, env: dict[str, Any]) -> None:
        kind = s[0]
        if kind == "block":
            self._stmts(s[1], r, env)
        elif kind == "if":
            cond = self._eval(s[1], r, env)
            if cond is True:
                self._stmt(s[2], r, env)
            elif s[3] is not None:
                self._stmt(s[3], r, env)
        elif kind in (ACCEPT, REJECT):
            raise _Done(kind)
        elif kind == "return":
            raise _Return()
        elif kind == "set":
            r.attrs[s[1]] = self._eval(s[2], r, env)
        elif kind == "method":
            _, name, method, args = s
            values = [self._eval(a, r, env) for a in args]
            if method == "add":
                current = list(r.get(name))
                if values[0] not in current:
                    current.append(values[0])
                r.attrs[name] = tuple(current)
            elif method == "prepend":
                r.attrs[name] = (values[0], *(r.get(name) or ()))
            else:
                raise ParseError(f"method {method}")
        elif kind == "call":
            _, name, args = s
            fn = self.config.functions.get(name)
            if fn is None:
                raise BirdError(f"no function {name}")
            values = [self._eval(a, r, env) for a in args]
            with contextlib.suppress(_Return):
                self._stmts(fn.body, r, dict(zip(fn.params, values, strict=True)))
        else:
            raise ParseError(f"statement {kind}")

    def _eval(self, e: Node, r: RouteState, env: dict[str, Any]) -> Any:
        kind = e[0]
        if kind == "const":
            return e[1]
        if kind == "name":
            name = e[1]
            if name in env:
                return env[name]
            if name.startswith("RTS_"):
                return Symbol(name)
            return r.get(name)
        if kind == "defined":
            return self._eval(e[1], r, env) is not VOID
        if kind == "not":
            v = self._eval(e[1], r, env)
            if not isinstance(v, bool):
                raise BirdError("! on a non-boolean")
            return not v
        if kind in ("and", "or"):
            left = self._eval(e[1], r, env)
            if not isinstance(left, bool):
                raise BirdError("boolean operation on a non-boolean")
            if (kind == "and" and not left) or (kind == "or" and left):
                return left
            right = self._eval(e[2], r, env)
            if not isinstance(right, bool):
                raise BirdError("boolean operation on a non-boolean")
            return right
        if kind == "tuple":
            return tuple(self._eval(p, r, env) for p in e[1])
        if kind == "arith":
            a, b = self._eval(e[2], r, env), self._eval(e[3], r, env)
            if not isinstance(a, int) or not isinstance(b, int):
                raise BirdError("arithmetic on a non-number")
            return a + b if e[1] == "+" else a - b
        if kind == "cmp":
            return self._compare(e[1], self._eval(e[2], r, env), self._eval(e[3], r, env))
        raise ParseError(f"expression {kind}")

    def _compare(self, op: str, a: Any, b: Any) -> bool:
        if op in ("~", "!~"):
            return self._match(a, b) is (op == "~")
        if a is VOID or b is VOID:
            return False  # val_compare's "hack for else": void is never equal or less
        if type(a) is not type(b) and not (isinstance(a, int) and isinstance(b, int)):
            raise BirdError(f"cannot compare {a!r} with {b!r}")
        if op == "=":
            return bool(a == b)
        if op == "!=":
            return bool(a != b)
        if not isinstance(a, int):
            raise BirdError("ordering on a non-number")
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]

    def _match(self, a: Any, b: Any) -> bool:
        if isinstance(a, Prefix) and isinstance(b, Prefix):
            return a.within(b)
        if isinstance(a, Prefix) and isinstance(b, PrefixSet):
            return b.contains(a)
        if isinstance(a, Symbol) and isinstance(b, EnumSet):
            return a.name in b.names
        if isinstance(a, str) and isinstance(b, str):
            return _pattern(b, a)
        if isinstance(b, tuple):  # (a, b) ~ bgp_community
            return a in b
        if isinstance(b, PathMask):
            return _path_match(a, b)
        raise BirdError(f"cannot match {a!r} against {b!r}")


# --- a route through one protocol's filters -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool
    state: RouteState
    verdict: str


def run_filter(config: BirdConfig, body: list[Node], route: RouteState) -> Outcome:
    verdict, state = Interpreter(config).run(body, route)
    return Outcome(verdict == ACCEPT, state, verdict)


def protocols(config: BirdConfig) -> Iterator[str]:
    return iter(sorted(config.neighbors))


def is_ibgp(config: BirdConfig, protocol: str) -> bool:
    return config.peer_as(protocol) == config.our_as(protocol)


Attributes = Mapping[str, Any]
"""Route attributes as this module names them (BIRD's names)."""

Evaluate = Callable[[str, RouteState], Outcome]
