"""Calico label selectors: grammar, precedence and the missing-label rules."""

from __future__ import annotations

import pytest

from calico.selector import SelectorError, parse

LABELS = {
    "rack": "rack-1",
    "zone": "eu-west-1a",
    "route-reflector": "true",
    "kubernetes.io/hostname": "node1",
    "empty": "",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   ", True),
        ("all()", True),
        ("all( )", True),
        ("global()", True),
        ("has(rack)", True),
        ("has( rack )", True),
        ("has(missing)", False),
        ("!has(missing)", True),
        ("!!has(rack)", True),
        ("has(empty)", True),
        ("rack == 'rack-1'", True),
        ('rack == "rack-1"', True),
        ("rack=='rack-1'", True),
        ("rack == 'rack-2'", False),
        ("rack != 'rack-2'", True),
        ("missing != 'x'", True),  # a missing label is "not equal"
        ("missing == ''", False),
        ("empty == ''", True),
        ("rack in {'rack-1', 'rack-2'}", True),
        ("rack in {'rack-2'}", False),
        ("rack in {}", False),
        ("rack not in {'rack-2'}", True),
        ("missing not in {'x'}", True),  # and "not in" any set
        ("missing in {'x'}", False),
        ("zone starts with 'eu-'", True),
        ("zone startswith 'eu-'", True),  # Calico's tokenizer does not need the space
        ("zone ends with '1a'", True),
        ("zone contains 'west'", True),
        ("missing contains ''", False),
        ("kubernetes.io/hostname == 'node1'", True),
        ("has(rack) && rack == 'rack-2'", False),
        ("has(rack) || rack == 'rack-2'", True),
        # && binds tighter than ||
        ("has(missing) && has(rack) || has(zone)", True),
        ("has(missing) && (has(rack) || has(zone))", False),
        ("!(has(rack) && has(zone))", False),
        ("has(missing) || !has(missing) && rack == 'rack-1'", True),
        ("route-reflector == 'true' && !has(missing) && zone != 'x'", True),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse(text).matches(LABELS) is expected


def test_global_is_false_for_namespaced_labels() -> None:
    assert not parse("global()").matches({"projectcalico.org/namespace": "default"})


def test_in_after_a_label_is_an_operator() -> None:
    # `in` right after a label is the operator, even where a label named "in..." could be.
    assert parse("a in {'x'}").matches({"a": "x"})
    assert parse("inx == 'y'").matches({"inx": "y"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rack = 'a'", "expected '==' at position 5"),
        ("rack == a", "expected a quoted string, found 'label'"),
        ("rack == 'a", "unterminated string at position 8"),
        ("has(rack", "expected ')' after has(rack at position 8"),
        ("has()", "expected a label name in has( at position 4"),
        ("all(x)", "expected ')' after all( at position 4"),
        ("rack", "expected an operator after label 'rack'"),
        ("rack starts 'a'", "expected an operator after label 'rack' at position 12"),
        ("rack in 'a'", "expected '{', found 'string'"),
        ("rack in {'a'", "expected '}', found 'end of selector'"),
        ("(has(a)", "expected ')', found 'end of selector'"),
        ("has(a) has(b)", "unexpected 'has()' after a complete selector"),
        ("has(a) &&", "unexpected 'end of selector'"),
        ("rack & x", "expected '&&' at position 5"),
        ("$x", "unexpected character '$' at position 0"),
        ("rack ~ 'a'", "expected an operator after label 'rack' at position 5"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse(text)
    assert str(e.value) == message


def test_parsed_selectors_are_values() -> None:
    assert parse("has(a)") == parse("has(a)")
    assert parse("has(a)") is parse("has(a)")  # cached
    assert str(parse("rack == 'a'")) == "rack == 'a'"
    assert str(parse("rack == 'a'").root) == 'rack == "a"'
    assert str(parse("a in {'y', 'x'} || !has(b)").root) == '(a in {"x", "y"} || !has(b))'
