"""bgpctl's command words abbreviate as birdc's do (BIRD client/commands.c `cmd_expand`): at
each level of the command tree a word that is a command word is taken as it is, otherwise a
word that begins exactly one command word stands for it (`show proto` is `show protocols`,
`sh ro for 10.0.0.1` is `show route for 10.0.0.1`). A word that begins several is ambiguous
and refused with the choices; a word that begins none is left for argparse to refuse.
Expansion stops at a command's last word: its arguments are never expanded, except the
keyword listed for it as its first argument (BIRD's `show protocols all` is itself a
command)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class AbbreviationError(ValueError):
    pass


def _children(paths: Iterable[tuple[str, ...]], prefix: tuple[str, ...]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        if len(path) > len(prefix) and path[: len(prefix)] == prefix:
            seen.setdefault(path[len(prefix)])
    return list(seen)


def resolve(word: str, choices: Sequence[str], where: str) -> str | None:
    """`word` itself or the one choice it abbreviates; None when it begins none."""
    if word in choices:
        return word
    matches = [c for c in choices if c.startswith(word)]
    if len(matches) > 1:
        raise AbbreviationError(
            f"ambiguous command {where}{word!r}: possible expansions are "
            + ", ".join(sorted(matches))
        )
    return matches[0] if matches else None


def expand(
    argv: Sequence[str],
    paths: Iterable[tuple[str, ...]],
    value_options: Sequence[str] = (),
    keywords: Mapping[tuple[str, ...], Sequence[str]] | None = None,
) -> list[str]:
    """`argv` with its command words written out. Options (words starting with '-') pass
    through; those in `value_options` take the next word with them."""
    paths = list(paths)
    out = list(argv)
    prefix: tuple[str, ...] = ()
    i = 0
    while i < len(out):
        word = out[i]
        if word.startswith("-"):
            if word in value_options:
                i += 1
            i += 1
            continue
        choices = _children(paths, prefix)
        if not choices:
            break
        where = " ".join(prefix) + " " if prefix else ""
        full = resolve(word, choices, where)
        if full is None:
            break
        out[i] = full
        prefix = (*prefix, full)
        i += 1
    # A complete command: a keyword as its first argument abbreviates too.
    words = (keywords or {}).get(prefix, ())
    while words and i < len(out):
        if not out[i].startswith("-"):
            full = resolve(out[i], words, " ".join(prefix) + " ")
            if full is not None:
                out[i] = full
            break
        i += 1
    return out
