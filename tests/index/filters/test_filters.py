"""Filter AST and the string syntax: parsing, round trips, and errors that point at the column."""

from __future__ import annotations

import pytest

from embedlab.errors import InvalidInputError
from embedlab.index import Filter, FilterSyntaxError
from embedlab.index.filters.ast import And, Compare, In, Not, Or, Range


def test_parse_example_from_the_issue():
    f = Filter.parse('domain == "noun.animal" and n_lemmas >= 2 and not pos in ["adj", "adv"]')
    assert f == (Filter.eq("domain", "noun.animal") & Filter.range("n_lemmas", ge=2)
                 & ~Filter.in_("pos", ["adj", "adv"]))


def test_precedence_not_over_and_over_or():
    f = Filter.parse("a == 1 or b == 2 and not c == 3")
    assert isinstance(f, Or) and isinstance(f.children[1], And) and isinstance(f.children[1].children[1], Not)
    assert Filter.parse("(a == 1 or b == 2) and c == 3") == (Filter.eq("a", 1) | Filter.eq("b", 2)) & Filter.eq("c", 3)


def test_literals_and_operators():
    f = Filter.parse("x < -1.5e2 and y != 'it\\'s' and z == true and t contains \"q\" and exists(w) and p not in [1, 2]")
    assert Range("x", None, -150.0, False, False) in f.children
    assert Compare("y", "!=", "it's") in f.children and Compare("z", "==", True) in f.children
    assert Not(In("p", (1, 2))) in f.children and Filter.exists("w") in f.children


@pytest.mark.parametrize("f", [
    Filter.eq("a", "x") & ~Filter.in_("b", [1, 2.5]) | Filter.range("c", gt=1, le=3),
    Filter.contains("tags", "a\"b") | Filter.exists("d") & Filter.ne("e", False),
])
def test_round_trips_through_text_and_dict(f):
    assert Filter.parse(f.to_text()) == f
    assert Filter.from_dict(f.to_dict()) == f


@pytest.mark.parametrize("text, column", [
    ('pos == "noun" and', 18),
    ('pos = "noun"', 5),
    ('pos == "noun', 8),
    ("n_lemmas >= 'two'", 13),
    ('(pos == "a"', 12),
    ('pos in ["a" "b"]', 13),
    ("pos == noun", 8),
    ("", 1),
])
def test_malformed_syntax_points_at_the_column(text, column):
    with pytest.raises(FilterSyntaxError, match=rf"^Filter.parse: text must be a filter expression, got .* at column {column}\.") as err:
        Filter.parse(text)
    assert err.value.column == column
    assert str(err.value).splitlines()[-1] == "  " + " " * (column - 1) + "^"


def test_constructor_errors():
    with pytest.raises(InvalidInputError, match=r"Filter.in_: values must be a non-empty list, got \[\]"):
        Filter.in_("a", [])
    with pytest.raises(InvalidInputError, match="Filter.range: bounds must include at least one"):
        Filter.range("a")
    with pytest.raises(InvalidInputError, match="Filter.eq: value must be a str, int, float or bool, got list"):
        Filter.eq("a", [1])
    with pytest.raises(InvalidInputError, match="Filter.eq: field must be a metadata field name"):
        Filter.eq("a b", 1)
    with pytest.raises(TypeError, match="combine filters with &, | and ~"):
        Filter.eq("a", 1) and Filter.eq("b", 2)
