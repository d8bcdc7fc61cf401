"""The filter string syntax, tokenised and parsed by recursive descent into the neutral ``to_dict`` form.

Nothing is evaluated: :func:`parse` returns the JSON-ready description of
:meth:`~embedlab.index.filters.ast.Filter.to_dict` (``{"op": ..., ...}``), which ``Filter.parse`` turns into
nodes with ``Filter.from_dict``; so this module needs no node class and the AST imports the syntax, never the
other way round. Every error names the column (1-based) and draws a caret under it.

The grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    domain == "noun.animal" and n_lemmas >= 2 and not pos in ["adj", "adv"]
    tags contains "x" or exists(year) and (score < 0.5 or flag == true)
    pos not in ["adj"]  and  n_lemmas != 1

Strings use double or single quotes with backslash escapes (JSON's: ``\\n \\t \\r \\uXXXX``, and ``\\'``); numbers
are ints (within int64) or floats; ``true`` / ``false`` are booleans. Field names are a letter or ``_`` in any
script (``año``), then letters, digits, ``_``, ``.``, ``-``.

Limits, each refused with a :class:`FilterSyntaxError` at the column: :data:`MAX_FILTER_CHARS` characters,
:data:`MAX_FILTER_TERMS` conditions, :data:`MAX_FILTER_DEPTH` and/or/not levels (a chain ``a or b or c`` is one
level; parentheses that group nothing new add none, but at most ``2 * MAX_FILTER_DEPTH`` may be open at once).
Parsing is linear in the length of the text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from embedlab.errors import InvalidInputError

Scalar = str | int | float | bool

MAX_FILTER_CHARS = 4_000_000
"""Longest filter string :func:`parse` accepts (a 100,000-term ``or`` chain of short conditions fits)."""
MAX_FILTER_TERMS = 100_000
"""Most conditions (comparisons, ``in``, ``contains``, ``exists``) in one filter; use ``in [...]`` for long lists."""
MAX_FILTER_DEPTH = 64
"""Most nested ``and`` / ``or`` / ``not`` levels in one filter (far beyond any hand-written filter; it keeps every
recursive walk of the tree well inside Python's recursion limit)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FIELD_NAME = re.compile(r"[^\W\d][\w.\-]*")
"""What a metadata field name looks like (``\\w`` is Unicode-aware: ``año`` is a field name)."""


class FilterSyntaxError(InvalidInputError):
    """A filter string is malformed; the message points at the column."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def parse(text: str) -> dict:
    """Parse ``text`` into the ``Filter.to_dict`` form (raises :class:`FilterSyntaxError` at the column)."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterSyntaxError(
            f"Filter.parse: text must be at most {MAX_FILTER_CHARS:,} characters, got {len(text):,}. Use in [...] for "
            "long lists of values, or split the request.", MAX_FILTER_CHARS + 1)
    return _Parser(text).parse()


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[\[\](),])
  | (?P<name>[^\W\d][\w.\-]*)
  | (?P<bad>.)
""", re.VERBOSE | re.DOTALL)
_KEYWORDS = {"and", "or", "not", "in", "contains", "exists", "true", "false"}


class _Tok(NamedTuple):
    kind: str  # num, str, op, punct, name, kw, end
    text: str
    col: int  # 1-based


def _tokenize(text: str) -> list[_Tok]:
    out = []
    append = out.append
    for m in _TOKEN.finditer(text):  # the 'bad' alternative makes the matches cover the whole text
        kind = m.lastgroup
        if kind == "ws":
            continue
        word, pos = m.group(), m.start()
        if kind == "name":
            low = word.lower()
            if low in _KEYWORDS:
                kind, word = "kw", low
        elif kind == "bad":
            if word in "\"'":
                _fail(text, pos + 1, "an unterminated string", "close the quote")
            _fail(text, pos + 1, f"the unexpected character {word!r}", "use field names, quoted strings, numbers, "
                  "== != < <= > >=, in [...], contains, exists(field), and/or/not and parentheses")
        append(_Tok(kind, word, pos + 1))
    append(_Tok("end", "", len(text) + 1))
    return out


def _fail(text: str, col: int, got: str, fix: str) -> None:
    start = 0 if len(text) <= 100 else max(0, col - 50)  # a long filter is shown around the column
    shown = ("..." if start else "") + text[start : start + 100] + ("..." if start + 100 < len(text) else "")
    caret = " " * (col - 1 - start + (3 if start else 0)) + "^"
    raise FilterSyntaxError(
        f"Filter.parse: text must be a filter expression, got {got} at column {col}. {fix[0].upper() + fix[1:]}.\n"
        f"  {shown}\n  {caret}", col)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _unescape(body: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else
                       _ESCAPES.get(m.group(1), m.group(1)), body)


class _Parser:
    """Recursive descent: or_expr := and_expr ('or' and_expr)*; and_expr := unary ('and' unary)*;
    unary := 'not' unary | '(' or_expr ')' | 'exists' '(' name ')' | comparison.

    Every rule returns ``(node dict, depth)`` (and/or/not levels in the node, see ``Filter.depth``); a chain's
    children are collected in one list (linear, not one copy per operator); ``open`` counts the parentheses and
    ``not`` s being parsed, so the recursion stays bounded whatever the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.open = 0
        self.terms = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None, what: str) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            self.error(tok, f"expected {what}")
        return self.take()

    def error(self, tok: _Tok, fix: str) -> None:
        got = "the end of the text" if tok.kind == "end" else repr(tok.text)
        _fail(self.text, tok.col, got, fix)

    def parse(self) -> dict:
        if self.peek().kind == "end":
            self.error(self.peek(), "write a condition such as pos == \"noun\"")
        f, _ = self.or_expr()
        if self.peek().kind != "end":
            self.error(self.peek(), "expected 'and', 'or' or the end of the filter")
        return f

    def level(self, tok: _Tok, depth: int) -> int:
        if depth > MAX_FILTER_DEPTH:
            self.error(tok, f"filters nest at most {MAX_FILTER_DEPTH} and/or/not levels; flatten the expression "
                            "(a chain a or b or c is one level) or use in [...]")
        return depth

    def chain(self, op: str, first: tuple[dict, int], start: _Tok) -> tuple[dict, int]:
        """``first (op next)*``: the operands in one flat list (operands that are ``op`` nodes are spliced in)."""
        children: list[dict] = []
        depth = 0
        part = first
        while True:
            f, d = part
            if op == "and" and children and _mergeable(children[-1], f):  # "x >= 1 and x < 5" is one range
                children[-1] = {**children[-1], "upper": f["upper"], "include_upper": f["include_upper"]}
            elif f["op"] == op:
                children.extend(f["children"])
                depth = max(depth, d - 1)
            else:
                children.append(f)
                depth = max(depth, d)
            if not (self.peek().kind == "kw" and self.peek().text == op):
                break
            self.take()
            part = self.and_expr() if op == "or" else self.unary()
        if len(children) == 1 and part is first:
            return first
        if len(children) == 1:  # one range merged from two conditions
            return children[0], depth
        return {"op": op, "children": children}, self.level(start, depth + 1)

    def or_expr(self) -> tuple[dict, int]:
        start = self.peek()
        return self.chain("or", self.and_expr(), start)

    def and_expr(self) -> tuple[dict, int]:
        start = self.peek()
        return self.chain("and", self.unary(), start)

    def unary(self) -> tuple[dict, int]:
        tok = self.peek()
        if tok.kind == "kw" and tok.text == "not" or tok.kind == "punct" and tok.text == "(":
            self.open += 1
            if self.open > 2 * MAX_FILTER_DEPTH:
                self.error(tok, f"filters nest at most {MAX_FILTER_DEPTH} and/or/not levels (and at most "
                                f"{2 * MAX_FILTER_DEPTH} open parentheses and 'not's); flatten the expression")
            self.take()
            if tok.text == "not":
                f, d = self.unary()
                out = {"op": "not", "child": f}, self.level(tok, d + 1)
            else:
                out = self.or_expr()
                self.expect("punct", ")", "')' to close the parenthesis")
            self.open -= 1
            return out
        if tok.kind == "kw" and tok.text == "exists":
            self.count(tok)
            self.take()
            self.expect("punct", "(", "'(' after exists")
            name = self.expect("name", None, "a field name inside exists(...)")
            self.expect("punct", ")", "')' after the field name")
            return {"op": "exists", "field": name.text}, 0
        return self.comparison()

    def count(self, tok: _Tok) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            self.error(tok, f"filters hold at most {MAX_FILTER_TERMS} conditions; use in [...] for long lists of "
                            "values")

    def comparison(self) -> tuple[dict, int]:
        name = self.peek()
        if name.kind != "name":
            self.error(name, "expected a field name, 'not', 'exists(' or '('")
        self.count(name)
        self.take()
        field = name.text
        tok = self.take()
        if tok.kind == "op":
            value_tok = self.peek()
            value = self.scalar()
            if tok.text in ("==", "!="):
                return {"op": tok.text, "field": field, "value": value}, 0
            if isinstance(value, (bool, str)):
                self.error(value_tok, f"expected a number after {tok.text}")
            lower = tok.text in (">", ">=")
            return {"op": "range", "field": field, "lower": value if lower else None,
                    "upper": None if lower else value, "include_lower": tok.text == ">=",
                    "include_upper": tok.text == "<="}, 0
        if tok.kind == "kw" and tok.text == "in":
            return {"op": "in", "field": field, "values": self.list_literal()}, 0
        if tok.kind == "kw" and tok.text == "not":
            self.expect("kw", "in", "'in' after 'not'")
            return {"op": "not", "child": {"op": "in", "field": field, "values": self.list_literal()}}, 1
        if tok.kind == "kw" and tok.text == "contains":
            return {"op": "contains", "field": field, "value": self.scalar()}, 0
        self.i -= 1
        self.error(tok, f"expected an operator after {field!r}: == != < <= > >= in, not in, contains")
        raise AssertionError  # unreachable

    def list_literal(self) -> list[Scalar]:
        self.expect("punct", "[", "'[' to start a list of values")
        values = [self.scalar()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            values.append(self.scalar())
        self.expect("punct", "]", "',' or ']' in the list")
        return values

    def scalar(self) -> Scalar:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            if any(c in tok.text for c in ".eE"):
                return float(tok.text)
            value = int(tok.text)
            if not INT64_MIN <= value <= INT64_MAX:
                self.i -= 1
                self.error(tok, "expected an int that fits in int64 ([-2**63, 2**63 - 1]); write a float such as "
                                "1e23 to compare with a float field")
            return value
        if tok.kind == "str":
            self.take()
            return _unescape(tok.text[1:-1])
        if tok.kind == "kw" and tok.text in ("true", "false"):
            self.take()
            return tok.text == "true"
        self.error(tok, "expected a value: a quoted string, a number, true or false")
        raise AssertionError  # unreachable


def _mergeable(last: dict, nxt: dict) -> bool:
    return (last["op"] == nxt["op"] == "range" and last["field"] == nxt["field"] and last["upper"] is None
            and nxt["lower"] is None)
