"""Metadata filters: a small immutable AST (what a filter means).

A :class:`Filter` is data, not a Python callable, so one expression has one meaning in every backend
and can be translated to other engines' expression languages (see :meth:`Filter.to_dict`).

Semantics (the same everywhere): a comparison on a field a document does not have is false; ``~f``
is the plain complement of ``f`` (so ``~Filter.eq("pos", "noun")`` keeps documents without ``pos``),
while ``Filter.ne("pos", "noun")`` keeps only documents that have ``pos`` and differ.

``Filter.parse`` reads the string syntax of :mod:`embedlab.index.filters.syntax` (parsed without ``eval``
into the ``to_dict`` form, then built by :meth:`Filter.from_dict`).

Limits (every way of building a filter checks them, with a clear error): field names are a letter or ``_``
(any script: ``año`` is fine) then letters, digits, ``_``, ``.``, ``-``; int literals fit in int64
(:data:`~embedlab.index.filters.syntax.INT64_MIN` .. ``INT64_MAX``; write a float such as ``1e23`` beyond);
a filter nests at most :data:`~embedlab.index.filters.syntax.MAX_FILTER_DEPTH` ``and``/``or``/``not`` levels
(a chain ``a or b or c ...`` is one level) and holds at most
:data:`~embedlab.index.filters.syntax.MAX_FILTER_TERMS` conditions; a filter string is at most
:data:`~embedlab.index.filters.syntax.MAX_FILTER_CHARS` characters.
"""

from __future__ import annotations

import functools

import json
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterable

from embedlab.errors import InvalidInputError
from embedlab.index.filters import syntax
from embedlab.index.filters.syntax import (
    FIELD_NAME, INT64_MAX, INT64_MIN, MAX_FILTER_DEPTH, MAX_FILTER_TERMS, Scalar)


def check_field(field: Any, owner: str, param: str = "field") -> str:
    """``field`` if it is a valid metadata field name (the one rule for filters and stored metadata)."""
    if not isinstance(field, str) or not FIELD_NAME.fullmatch(field):
        raise InvalidInputError(
            f"{owner}: {param} must be a metadata field name (a letter or '_', then letters, digits, '_', '.', '-'), "
            f"got {field!r}.")
    return field


def check_int64(value: int, owner: str, param: str) -> int:
    """``value`` if it fits in int64 (what stored int fields and int filter values hold)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInputError(
            f"{owner}: {param} must be an int that fits in int64 ([-2**63, 2**63 - 1]), got {value}. "
            "Write it as a float (e.g. 1e23) to compare with a float field.")
    return value


def _check_scalar(value: Any, owner: str, param: str = "value") -> Scalar:
    if isinstance(value, bool) or isinstance(value, (str, int, float)):
        if isinstance(value, float) and value != value:
            raise InvalidInputError(f"{owner}: {param} must not be NaN, got nan.")
        if isinstance(value, int) and not isinstance(value, bool):
            check_int64(value, owner, param)
        return value
    import numpy as np

    if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float, str)):
        return _check_scalar(value.item(), owner, param)
    raise InvalidInputError(
        f"{owner}: {param} must be a str, int, float or bool, got {type(value).__name__} {value!r}.")


def _in(field: Any, values: Any, owner: str, param: str = "values", field_param: str = "field") -> "Filter":
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{owner}: {param} must be a list of scalars, got {type(values).__name__}.")
    values = tuple(_check_scalar(v, owner, param) for v in values)
    if not values:
        raise InvalidInputError(f"{owner}: {param} must be a non-empty list, got []. Use a filter that is false.")
    return In(check_field(field, owner, field_param), values)


def _range(field: Any, lower: Any, upper: Any, include_lower: bool, include_upper: bool, owner: str,
           path: str | None = None) -> "Filter":
    """A :class:`Range`; ``path`` names the ``from_dict`` node (its keys are then named in errors)."""
    field_param, lower_param, upper_param = (("field", "lower bound", "upper bound") if path is None else
                                             (f"{path}['field']", f"{path}['lower']", f"{path}['upper']"))
    if lower is None and upper is None:
        raise InvalidInputError(f"{owner}: bounds must include at least one of gt, ge, lt, le, got none." if path is None
                                else f"{owner}: {path} must have a 'lower' or an 'upper' bound, got neither.")
    for name, v in ((lower_param, lower), (upper_param, upper)):
        if v is not None and (isinstance(v, (bool, str)) or not isinstance(_check_scalar(v, owner, name), (int, float))):
            raise InvalidInputError(f"{owner}: {name} must be an int or float, got {type(v).__name__} {v!r}.")
    return Range(check_field(field, owner, field_param), lower, upper, lower is not None and include_lower,
                 upper is not None and include_upper)


class Filter:
    """Base of every filter node; build them with the static constructors and combine with ``& | ~``."""

    __slots__ = ()
    depth = 0  # and/or/not levels above the deepest condition (a condition alone is 0); see MAX_FILTER_DEPTH
    terms = 1  # conditions (leaves) in the tree; see MAX_FILTER_TERMS

    # ---------------------------------------------------------------- constructors
    @staticmethod
    def eq(field: str, value: Scalar) -> "Filter":
        """Documents whose ``field`` equals ``value``."""
        return Compare(check_field(field, "Filter.eq"), "==", _check_scalar(value, "Filter.eq"))

    @staticmethod
    def ne(field: str, value: Scalar) -> "Filter":
        """Documents that have ``field`` and whose value differs from ``value``."""
        return Compare(check_field(field, "Filter.ne"), "!=", _check_scalar(value, "Filter.ne"))

    @staticmethod
    def in_(field: str, values: Iterable[Scalar]) -> "Filter":
        """Documents whose ``field`` equals one of ``values`` (a non-empty list)."""
        return _in(field, values, "Filter.in_")

    @staticmethod
    def range(field: str, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
              le: float | None = None) -> "Filter":
        """Documents whose numeric ``field`` lies in the bounds (``ge``/``le`` inclusive, ``gt``/``lt`` exclusive)."""
        if gt is not None and ge is not None or lt is not None and le is not None:
            raise InvalidInputError("Filter.range: give at most one lower bound (gt or ge) and one upper (lt or le).")
        return _range(field, gt if gt is not None else ge, lt if lt is not None else le, ge is not None,
                      le is not None, "Filter.range")

    @staticmethod
    def contains(field: str, value: str) -> "Filter":
        """Documents whose list-of-str ``field`` contains ``value``."""
        return Contains(check_field(field, "Filter.contains"), _check_scalar(value, "Filter.contains"))

    @staticmethod
    def exists(field: str) -> "Filter":
        """Documents that have ``field``."""
        return Exists(check_field(field, "Filter.exists"))

    @staticmethod
    def parse(text: str) -> "Filter":
        """Parse the string syntax (:mod:`~embedlab.index.filters.syntax`); a
        :class:`~embedlab.index.filters.syntax.FilterSyntaxError` points at the column (1-based)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"Filter.parse: text must be a str, got {type(text).__name__}.")
        return _from_dict(syntax.parse(text), "Filter.parse", "filter", 0)

    @staticmethod
    def from_dict(data: dict) -> "Filter":
        """Inverse of :meth:`to_dict`; every error names the offending key (``data['children'][2]['field']``)."""
        return _from_dict(data, "Filter.from_dict", "data", 0)

    # ---------------------------------------------------------------- combinators
    def __and__(self, other: "Filter") -> "Filter":
        _check_filter(other, "&")
        return And((*_flatten(self, And), *_flatten(other, And)))

    def __or__(self, other: "Filter") -> "Filter":
        _check_filter(other, "|")
        return Or((*_flatten(self, Or), *_flatten(other, Or)))

    def __invert__(self) -> "Filter":
        return self.child if isinstance(self, Not) else Not(self)

    def __bool__(self) -> bool:
        raise TypeError("Filter: a filter has no truth value; combine filters with &, | and ~, not and/or/not.")

    # ---------------------------------------------------------------- introspection
    def fields(self) -> set[str]:
        """Every field name the filter reads."""
        if isinstance(self, (And, Or)):
            return set().union(*(c.fields() for c in self.children))
        if isinstance(self, Not):
            return self.child.fields()
        return {self.field}  # type: ignore[attr-defined]

    def to_dict(self) -> dict:
        """A JSON-ready description (``{"op": ..., ...}``) to send over HTTP or translate to another engine."""
        raise NotImplementedError  # pragma: no cover - every node overrides

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """The expression in the string syntax. ``Filter.parse(f.to_text())`` means the same as ``f`` and is ``f``
        itself, except that one-sided ranges of one field and-ed together read back as a single two-sided Range."""
        raise NotImplementedError  # pragma: no cover


_KEYS = {"and": {"children"}, "or": {"children"}, "not": {"child"}, "==": {"field", "value"},
         "!=": {"field", "value"}, "in": {"field", "values"}, "contains": {"field", "value"}, "exists": {"field"},
         "range": {"field", "lower", "upper", "include_lower", "include_upper"}}
_OPTIONAL = {"range": {"lower", "upper", "include_lower", "include_upper"}}


def _from_dict(data: Any, owner: str, path: str, depth: int) -> Filter:
    """Build one node of the ``to_dict`` form at ``path`` (``depth`` and/or/not levels above it)."""
    if not isinstance(data, dict) or "op" not in data:
        got = f"a dict without 'op' (keys {sorted(map(str, data))})" if isinstance(data, dict) else \
            f"{type(data).__name__} {data!r:.80}"
        raise InvalidInputError(f"{owner}: {path} must be a dict with an 'op' key, got {got}.")
    op = data["op"]
    if not isinstance(op, str) or op not in _KEYS:
        raise InvalidInputError(f"{owner}: {path}['op'] must be one of {sorted(_KEYS)}, got {op!r}.")
    keys = set(data) - {"op"}
    required = _KEYS[op] - _OPTIONAL.get(op, set())
    if required - keys:
        raise InvalidInputError(f"{owner}: {path} must have the key {sorted(required - keys)[0]!r} for op {op!r}, "
                                f"got keys {sorted(map(str, data))}.")
    if keys - _KEYS[op]:
        raise InvalidInputError(f"{owner}: {path} must only have the keys {sorted(_KEYS[op] | {'op'})} for op "
                                f"{op!r}, got the extra key {sorted(map(str, keys - _KEYS[op]))[0]!r}.")
    if op in ("and", "or", "not"):
        if depth >= MAX_FILTER_DEPTH:
            raise InvalidInputError(
                f"{owner}: {path} must nest at most {MAX_FILTER_DEPTH} and/or/not levels, got more. Flatten the "
                "expression (a chain a or b or c is one level) or use in [...].")
        if op == "not":
            return Not(_from_dict(data["child"], owner, f"{path}['child']", depth + 1))
        children = data["children"]
        if not isinstance(children, (list, tuple)) or not children:
            got = "[]" if isinstance(children, (list, tuple)) else f"{type(children).__name__} {children!r:.80}"
            raise InvalidInputError(f"{owner}: {path}['children'] must be a non-empty list of filters, got {got}.")
        if len(children) > MAX_FILTER_TERMS:
            raise InvalidInputError(f"{owner}: {path}['children'] must hold at most {MAX_FILTER_TERMS} filters, got "
                                    f"{len(children)}. Use in [...] for long lists of values.")
        built = tuple(_from_dict(c, owner, f"{path}['children'][{i}]", depth + 1) for i, c in enumerate(children))
        return And(built) if op == "and" else Or(built)
    fld = data["field"]
    fparam = f"{path}['field']"
    if op in ("==", "!="):
        return Compare(check_field(fld, owner, fparam), op, _check_scalar(data["value"], owner, f"{path}['value']"))
    if op == "in":
        return _in(fld, data["values"], owner, f"{path}['values']", fparam)
    if op == "range":
        for key in ("include_lower", "include_upper"):
            if not isinstance(data.get(key, False), bool):
                raise InvalidInputError(f"{owner}: {path}[{key!r}] must be a bool, got {data[key]!r}.")
        return _range(fld, data.get("lower"), data.get("upper"), data.get("include_lower", False),
                      data.get("include_upper", False), owner, path)
    if op == "contains":
        return Contains(check_field(fld, owner, fparam), _check_scalar(data["value"], owner, f"{path}['value']"))
    return Exists(check_field(fld, owner, fparam))


def _check_filter(value: Any, op: str) -> None:
    if not isinstance(value, Filter):
        raise InvalidInputError(f"Filter.{op}: operand must be a Filter, got {type(value).__name__}.")


def _flatten(f: Filter, kind: type) -> tuple[Filter, ...]:
    return f.children if isinstance(f, kind) else (f,)  # type: ignore[attr-defined]


def _lit(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return repr(v)
@dataclass(frozen=True, eq=True)
class Compare(Filter):
    field: str
    op: str  # "==" or "!="
    value: Scalar

    def to_dict(self) -> dict:
        return {"op": self.op, "field": self.field, "value": self.value}

    def to_text(self) -> str:
        return f"{self.field} {self.op} {_lit(self.value)}"


@dataclass(frozen=True, eq=True)
class In(Filter):
    field: str
    values: tuple[Scalar, ...]

    def to_dict(self) -> dict:
        return {"op": "in", "field": self.field, "values": list(self.values)}

    def to_text(self) -> str:
        return f"{self.field} in [{', '.join(_lit(v) for v in self.values)}]"


@dataclass(frozen=True, eq=True)
class Range(Filter):
    field: str
    lower: float | None
    upper: float | None
    include_lower: bool
    include_upper: bool

    def to_dict(self) -> dict:
        return {"op": "range", "field": self.field, "lower": self.lower, "upper": self.upper,
                "include_lower": self.include_lower, "include_upper": self.include_upper}

    def to_text(self) -> str:
        parts = []
        if self.lower is not None:
            parts.append(f"{self.field} {'>=' if self.include_lower else '>'} {_lit(self.lower)}")
        if self.upper is not None:
            parts.append(f"{self.field} {'<=' if self.include_upper else '<'} {_lit(self.upper)}")
        return parts[0] if len(parts) == 1 else f"({' and '.join(parts)})"


@dataclass(frozen=True, eq=True)
class Contains(Filter):
    field: str
    value: Scalar

    def to_dict(self) -> dict:
        return {"op": "contains", "field": self.field, "value": self.value}

    def to_text(self) -> str:
        return f"{self.field} contains {_lit(self.value)}"


@dataclass(frozen=True, eq=True)
class Exists(Filter):
    field: str

    def to_dict(self) -> dict:
        return {"op": "exists", "field": self.field}

    def to_text(self) -> str:
        return f"exists({self.field})"


@dataclass(frozen=True, eq=True)
class And(Filter):
    children: tuple[Filter, ...]
    depth: int = dc_field(init=False, repr=False, compare=False, default=0)
    terms: int = dc_field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if not self.children:
            raise InvalidInputError("Filter: and must have at least one child, got none.")
        _check_shape(self, self.children)

    def to_dict(self) -> dict:
        return {"op": "and", "children": [c.to_dict() for c in self.children]}

    def to_text(self) -> str:
        return "(" + " and ".join(c.to_text() for c in self.children) + ")"


@dataclass(frozen=True, eq=True)
class Or(Filter):
    children: tuple[Filter, ...]
    depth: int = dc_field(init=False, repr=False, compare=False, default=0)
    terms: int = dc_field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if not self.children:
            raise InvalidInputError("Filter: or must have at least one child, got none.")
        _check_shape(self, self.children)

    def to_dict(self) -> dict:
        return {"op": "or", "children": [c.to_dict() for c in self.children]}

    def to_text(self) -> str:
        return "(" + " or ".join(c.to_text() for c in self.children) + ")"


@dataclass(frozen=True, eq=True)
class Not(Filter):
    child: Filter
    depth: int = dc_field(init=False, repr=False, compare=False, default=0)
    terms: int = dc_field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        _check_shape(self, (self.child,))

    def to_dict(self) -> dict:
        return {"op": "not", "child": self.child.to_dict()}

    def to_text(self) -> str:
        return f"not {self.child.to_text()}" if not isinstance(self.child, (And, Or)) else f"not {self.child.to_text()}"


def _check_shape(node: Filter, children: tuple) -> None:
    """Cache ``depth`` and ``terms`` of an and/or/not node and enforce the limits (O(children), once per node)."""
    for c in children:
        if not isinstance(c, Filter):
            raise InvalidInputError(f"Filter: children must be Filters, got {type(c).__name__}.")
    depth = 1 + max(c.depth for c in children)
    terms = sum(c.terms for c in children)
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInputError(
            f"Filter: filters must nest at most {MAX_FILTER_DEPTH} and/or/not levels, got {depth}. Flatten the "
            "expression (a chain a | b | c is one level) or use Filter.in_.")
    if terms > MAX_FILTER_TERMS:
        raise InvalidInputError(f"Filter: filters must hold at most {MAX_FILTER_TERMS} conditions, got {terms}. "
                                "Use Filter.in_ for long lists of values.")
    object.__setattr__(node, "depth", depth)
    object.__setattr__(node, "terms", terms)


def as_filter(value: Any, owner: str) -> Filter | None:
    """Accept ``None``, a :class:`Filter`, a filter string, or a :meth:`Filter.to_dict` dict."""
    if value is None or isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return _parsed(value)
    if isinstance(value, dict):
        return Filter.from_dict(value)
    raise InvalidInputError(
        f"{owner}: filter must be a Filter, a filter string or None, got {type(value).__name__}. "
        "Build one with Filter.eq(...) or write 'field == \"value\"'."
    )


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Filter:
    """:meth:`Filter.parse`, cached: filters are immutable, and a service sends the same few strings again and again
    (parsing one costs ~0.1 ms, a third of a one-query search). Errors are raised, never cached."""
    return Filter.parse(text)
