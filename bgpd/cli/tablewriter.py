"""calicoctl's tables, exactly: olekukonko/tablewriter v0.0.5 with its defaults (calicoctl
v3.32 `ipam show`; reference/calico.md 5), pure.

What the defaults do, and this port does:
* headers are upper-cased ("_" becomes a space) and centred, the odd space on the right;
* a cell is right-aligned when it is a decimal number ("65536", "0.5"), else left-aligned;
* cells wider than 30 columns wrap at spaces, lines chosen for the least raggedness (its
  WrapWords), a single longer word widening the column; a row is as tall as its tallest
  cell, shorter cells padded with blank lines;
* ASCII borders: `+---+` rules above the header, under it and at the bottom.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_WIDTH = 30
_DECIMAL = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$")
_PENALTY = 100_000


def wrap_words(words: Sequence[str], limit: int) -> list[list[str]]:
    """tablewriter's WrapWords (one space between words): minimal squared slack per line,
    too-long lines penalised."""
    n = len(words)
    length = [[0] * n for _ in range(n)]
    for i in range(n):
        length[i][i] = len(words[i])
        for j in range(i + 1, n):
            length[i][j] = length[i][j - 1] + 1 + len(words[j])
    breaks = [0] * n
    cost = [2**31 - 1] * n
    for i in range(n - 1, -1, -1):
        if length[i][n - 1] <= limit:
            cost[i], breaks[i] = 0, n
            continue
        for j in range(i + 1, n):
            d = limit - length[i][j - 1]
            c = d * d + cost[j]
            if length[i][j - 1] > limit:
                c += _PENALTY
            if c < cost[i]:
                cost[i], breaks[i] = c, j
    lines, i = [], 0
    while i < n:
        lines.append(list(words[i : breaks[i]]))
        i = breaks[i]
    return lines


def _cell_lines(text: str) -> tuple[list[str], int]:
    """parseDimension: the cell's lines and the width it asks of its column."""
    raw = text.split("\n")
    width = min(max(len(line) for line in raw), MAX_WIDTH)
    # reflowText: one paragraph of everything.
    words = " ".join(raw).replace("\n", " ").split(" ")
    limit = max([width, *(len(w) for w in words)])
    lines = [" ".join(line) for line in wrap_words(words, limit)]
    return lines, max([width, *(len(line) for line in lines)])


def _title(name: str) -> str:
    """tablewriter's Title: "_" -> " ", "." -> " " unless between digits, upper-cased."""
    chars = list(name)
    for i, ch in enumerate(chars):
        if ch == "_" or (
            ch == "."
            and (
                (i != 0 and not _num_or_space(chars[i - 1]))
                or (i != len(chars) - 1 and not _num_or_space(chars[i + 1]))
            )
        ):
            chars[i] = " "
    text = "".join(chars).strip()
    if not text and name:
        text = " "
    return text.upper()


def _num_or_space(ch: str) -> bool:
    return ch == " " or "0" <= ch <= "9"


def _centre(text: str, width: int) -> str:
    gap = width - len(text)
    if gap <= 0:
        return text
    left = gap // 2
    return " " * left + text + " " * (gap - left)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [0] * len(headers)
    head_cells = []
    for i, h in enumerate(headers):
        lines, w = _cell_lines(h)
        head_cells.append(lines)
        widths[i] = max(widths[i], w)
    body: list[list[list[str]]] = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            lines, w = _cell_lines(value)
            cells.append(lines)
            widths[i] = max(widths[i], w)
        body.append(cells)
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule]
    for x in range(max(len(c) for c in head_cells)):
        cells = [_title(c[x]) if x < len(c) else "" for c in head_cells]
        out.append("|" + "".join(f" {_centre(h, w)} |" for h, w in zip(cells, widths, strict=True)))
    out.append(rule)
    for cells in body:
        height = max(len(c) for c in cells)
        padded = [c + ["  "] * (height - len(c)) for c in cells]
        for x in range(height):
            parts = []
            for lines, w in zip(padded, widths, strict=True):
                text = lines[x]
                parts.append(text.rjust(w) if _DECIMAL.match(text.strip()) else text.ljust(w))
            out.append("|" + "".join(f" {p} |" for p in parts))
    out.append(rule)
    return "\n".join(out) + "\n"
