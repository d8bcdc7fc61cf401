"""The filter string syntax, tokenised and parsed by recursive descent into the neutral ``to_dict`` form.

Nothing is evaluated: :func:`parse` returns the JSON-ready description of
:meth:`~embedlab.index.filters.ast.Filter.to_dict` (``{"op": ..., ...}``), which ``Filter.parse`` turns into
nodes with ``Filter.from_dict``; so this module needs no node class and the AST imports the syntax, never the
other way round. Every error names the column (1-based) and draws a caret under it.

The grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    domain == "noun.animal" and n_lemmas >= 2 and not pos in ["adj", "adv"]
    tags contains "x" or exists(year) and (score < 0.5 or flag == true)
    pos not in ["adj"]  and  n_lemmas != 1

Strings use double or single quotes with backslash escapes; numbers are ints or floats; ``true`` /
``false`` are booleans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embedlab.errors import InvalidInputError

Scalar = str | int | float | bool


class FilterSyntaxError(InvalidInputError):
    """A filter string is malformed; the message points at the column."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def parse(text: str) -> dict:
    """Parse ``text`` into the ``Filter.to_dict`` form (raises :class:`FilterSyntaxError` at the column)."""
    return _Parser(text).parse()


def _join(op: str, left: dict, right: dict) -> dict:
    """``left op right`` flattened, as ``Filter.__and__`` / ``__or__`` do."""
    parts = [c for f in (left, right) for c in (f["children"] if f["op"] == op else [f])]
    return {"op": op, "children": parts}


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[\[\](),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "contains", "exists", "true", "false"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, str, op, punct, name, kw, end
    text: str
    col: int  # 1-based


def _tokenize(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "\"'":
                _fail(text, pos + 1, "an unterminated string", "close the quote")
            _fail(text, pos + 1, f"the unexpected character {text[pos]!r}", "use field names, quoted strings, numbers, "
                  "== != < <= > >=, in [...], contains, exists(field), and/or/not and parentheses")
        kind = m.lastgroup
        if kind != "ws":
            word = m.group()
            if kind == "name" and word.lower() in _KEYWORDS:
                out.append(_Tok("kw", word.lower(), pos + 1))
            else:
                out.append(_Tok(kind, word, pos + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


def _fail(text: str, col: int, got: str, fix: str) -> None:
    caret = " " * (col - 1) + "^"
    raise FilterSyntaxError(
        f"Filter.parse: text must be a filter expression, got {got} at column {col}. {fix[0].upper() + fix[1:]}.\n"
        f"  {text}\n  {caret}", col)


class _Parser:
    """Recursive descent: or_expr := and_expr ('or' and_expr)*; and_expr := unary ('and' unary)*;
    unary := 'not' unary | '(' or_expr ')' | 'exists' '(' name ')' | comparison."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

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
        f = self.or_expr()
        if self.peek().kind != "end":
            self.error(self.peek(), "expected 'and', 'or' or the end of the filter")
        return f

    def or_expr(self) -> dict:
        f = self.and_expr()
        while self.peek().kind == "kw" and self.peek().text == "or":
            self.take()
            f = _join("or", f, self.and_expr())
        return f

    def and_expr(self) -> dict:
        f = self.unary()
        while self.peek().kind == "kw" and self.peek().text == "and":
            self.take()
            nxt = self.unary()
            last = f["children"][-1] if f["op"] == "and" else f
            if (last["op"] == nxt["op"] == "range" and last["field"] == nxt["field"]
                    and last["upper"] is None and nxt["lower"] is None):  # "x >= 1 and x < 5" is one range
                merged = {**last, "upper": nxt["upper"], "include_upper": nxt["include_upper"]}
                f = {"op": "and", "children": [*f["children"][:-1], merged]} if f["op"] == "and" else merged
            else:
                f = _join("and", f, nxt)
        return f

    def unary(self) -> dict:
        tok = self.peek()
        if tok.kind == "kw" and tok.text == "not":
            self.take()
            return {"op": "not", "child": self.unary()}
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            f = self.or_expr()
            self.expect("punct", ")", "')' to close the parenthesis")
            return f
        if tok.kind == "kw" and tok.text == "exists":
            self.take()
            self.expect("punct", "(", "'(' after exists")
            name = self.expect("name", None, "a field name inside exists(...)")
            self.expect("punct", ")", "')' after the field name")
            return {"op": "exists", "field": name.text}
        return self.comparison()

    def comparison(self) -> dict:
        name = self.peek()
        if name.kind != "name":
            self.error(name, "expected a field name, 'not', 'exists(' or '('")
        self.take()
        field = name.text
        tok = self.take()
        if tok.kind == "op":
            value_tok = self.peek()
            value = self.scalar()
            if tok.text in ("==", "!="):
                return {"op": tok.text, "field": field, "value": value}
            if isinstance(value, (bool, str)):
                self.error(value_tok, f"expected a number after {tok.text}")
            lower = tok.text in (">", ">=")
            return {"op": "range", "field": field, "lower": value if lower else None,
                    "upper": None if lower else value, "include_lower": tok.text == ">=",
                    "include_upper": tok.text == "<="}
        if tok.kind == "kw" and tok.text == "in":
            return {"op": "in", "field": field, "values": self.list_literal()}
        if tok.kind == "kw" and tok.text == "not":
            self.expect("kw", "in", "'in' after 'not'")
            return {"op": "not", "child": {"op": "in", "field": field, "values": self.list_literal()}}
        if tok.kind == "kw" and tok.text == "contains":
            return {"op": "contains", "field": field, "value": self.scalar()}
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
            return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        if tok.kind == "str":
            self.take()
            body = tok.text[1:-1]
            return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
        if tok.kind == "kw" and tok.text in ("true", "false"):
            self.take()
            return tok.text == "true"
        self.error(tok, "expected a value: a quoted string, a number, true or false")
        raise AssertionError  # unreachable


