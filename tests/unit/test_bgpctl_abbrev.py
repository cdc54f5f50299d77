"""bgpctl's words abbreviate as birdc's (client/commands.c cmd_expand); `show route for ADDR`
and `routes ADDR` find the longest match, as BIRD's `show route for` does."""

from __future__ import annotations

import pytest

from bgpd.cli.abbrev import AbbreviationError, expand
from bgpd.cli.bgpctl import _VALUE_OPTIONS, COMMANDS, KEYWORDS
from bgpd.cli.route_cmds import RouteQuery, UsageError, parse_route_words
from bgpd.daemon.views import _masked

PATHS = [c.path for c in COMMANDS]


def ex(*argv: str) -> list[str]:
    return expand(list(argv), PATHS, _VALUE_OPTIONS, KEYWORDS)


def test_birds_abbreviations() -> None:
    assert ex("show", "proto") == ["show", "protocols"]
    assert ex("sh", "pro", "a", "Mesh_10_0_0_2") == ["show", "protocols", "all", "Mesh_10_0_0_2"]
    assert ex("sh", "ro", "for", "10.0.0.1") == ["show", "route", "for", "10.0.0.1"]
    assert ex("stat", "--json") == ["status", "--json"]
    # Options and their values pass through; arguments are never expanded.
    assert ex("--control-socket", "s", "rou", "10.0.0.1") == [
        "--control-socket", "s", "routes", "10.0.0.1"
    ]
    assert ex("show", "protocols", "Mesh_1") == ["show", "protocols", "Mesh_1"]


def test_ambiguous_and_unknown_words() -> None:
    with pytest.raises(AbbreviationError, match="possible expansions are"):
        ex("r")  # reload, routes
    assert ex("nosuch", "x") == ["nosuch", "x"]  # left for argparse to refuse


def test_show_route_words() -> None:
    assert parse_route_words(["for", "192.168.2.5", "protocol", "Mesh_1", "all"]) == RouteQuery(
        "192.168.2.5/32", True, "Mesh_1", None, False, True
    )
    assert parse_route_words(["10.0.0.0/8"]) == RouteQuery("10.0.0.0/8")
    assert parse_route_words(["export", "Mesh_1"]) == RouteQuery(export="Mesh_1")
    with pytest.raises(UsageError):
        parse_route_words(["10.0.0.0/8", "10.1.0.0/16"])
    with pytest.raises(UsageError):
        parse_route_words(["for"])


def test_masking_for_longest_match() -> None:
    address = bytes([192, 168, 2, 5])
    assert _masked(address, 32) == bytes([32, 192, 168, 2, 5])
    assert _masked(address, 26) == bytes([26, 192, 168, 2, 0])
    assert _masked(address, 0) == bytes([0])
