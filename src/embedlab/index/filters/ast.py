"""Metadata filters: a small immutable AST (what a filter means).

A :class:`Filter` is data, not a Python callable, so one expression has one meaning in every backend
and can be translated to other engines' expression languages (see :meth:`Filter.to_dict`).

Semantics (the same everywhere): a comparison on a field a document does not have is false; ``~f``
is the plain complement of ``f`` (so ``~Filter.eq("pos", "noun")`` keeps documents without ``pos``),
while ``Filter.ne("pos", "noun")`` keeps only documents that have ``pos`` and differ.

``Filter.parse`` reads the string syntax of :mod:`embedlab.index.filters.syntax` (parsed without ``eval``
into the ``to_dict`` form, then built by :meth:`Filter.from_dict`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from embedlab.errors import InvalidInputError
from embedlab.index.filters import syntax
from embedlab.index.filters.syntax import Scalar


def _check_field(field: Any, method: str) -> str:
    if not isinstance(field, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", field):
        raise InvalidInputError(
            f"Filter.{method}: field must be a metadata field name (letters, digits, '_', '.', '-'), got {field!r}."
        )
    return field


def _check_scalar(value: Any, method: str, what: str = "value") -> Scalar:
    if isinstance(value, bool) or isinstance(value, (str, int, float)):
        if isinstance(value, float) and value != value:
            raise InvalidInputError(f"Filter.{method}: {what} must not be NaN, got nan.")
        return value
    import numpy as np

    if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float, str)):
        return value.item()
    raise InvalidInputError(
        f"Filter.{method}: {what} must be a str, int, float or bool, got {type(value).__name__} {value!r}."
    )


class Filter:
    """Base of every filter node; build them with the static constructors and combine with ``& | ~``."""

    __slots__ = ()

    # ---------------------------------------------------------------- constructors
    @staticmethod
    def eq(field: str, value: Scalar) -> "Filter":
        """Documents whose ``field`` equals ``value``."""
        return Compare(_check_field(field, "eq"), "==", _check_scalar(value, "eq"))

    @staticmethod
    def ne(field: str, value: Scalar) -> "Filter":
        """Documents that have ``field`` and whose value differs from ``value``."""
        return Compare(_check_field(field, "ne"), "!=", _check_scalar(value, "ne"))

    @staticmethod
    def in_(field: str, values: Iterable[Scalar]) -> "Filter":
        """Documents whose ``field`` equals one of ``values`` (a non-empty list)."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise InvalidInputError(f"Filter.in_: values must be a list of scalars, got {type(values).__name__}.")
        values = tuple(_check_scalar(v, "in_", "values") for v in values)
        if not values:
            raise InvalidInputError("Filter.in_: values must be a non-empty list, got []. Use a filter that is false.")
        return In(_check_field(field, "in_"), values)

    @staticmethod
    def range(field: str, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
              le: float | None = None) -> "Filter":
        """Documents whose numeric ``field`` lies in the bounds (``ge``/``le`` inclusive, ``gt``/``lt`` exclusive)."""
        if gt is not None and ge is not None or lt is not None and le is not None:
            raise InvalidInputError("Filter.range: give at most one lower bound (gt or ge) and one upper (lt or le).")
        lower, upper = (gt if gt is not None else ge), (lt if lt is not None else le)
        if lower is None and upper is None:
            raise InvalidInputError("Filter.range: bounds must include at least one of gt, ge, lt, le, got none.")
        for name, v in (("lower bound", lower), ("upper bound", upper)):
            if v is not None and (isinstance(v, (bool, str)) or not isinstance(_check_scalar(v, "range", name), (int, float))):
                raise InvalidInputError(f"Filter.range: {name} must be an int or float, got {type(v).__name__} {v!r}.")
        return Range(_check_field(field, "range"), lower, upper, lower is not None and ge is not None,
                     upper is not None and le is not None)

    @staticmethod
    def contains(field: str, value: str) -> "Filter":
        """Documents whose list-of-str ``field`` contains ``value``."""
        return Contains(_check_field(field, "contains"), _check_scalar(value, "contains"))

    @staticmethod
    def exists(field: str) -> "Filter":
        """Documents that have ``field``."""
        return Exists(_check_field(field, "exists"))

    @staticmethod
    def parse(text: str) -> "Filter":
        """Parse the string syntax (:mod:`~embedlab.index.filters.syntax`); a
        :class:`~embedlab.index.filters.syntax.FilterSyntaxError` points at the column (1-based)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"Filter.parse: text must be a str, got {type(text).__name__}.")
        return Filter.from_dict(syntax.parse(text))

    @staticmethod
    def from_dict(data: dict) -> "Filter":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "op" not in data:
            raise InvalidInputError(f"Filter.from_dict: data must be a dict with an 'op' key, got {data!r}.")
        op = data["op"]
        if op in ("and", "or"):
            children = tuple(Filter.from_dict(c) for c in data["children"])
            return And(children) if op == "and" else Or(children)
        if op == "not":
            return Not(Filter.from_dict(data["child"]))
        if op in ("==", "!="):
            return (Filter.eq if op == "==" else Filter.ne)(data["field"], data["value"])
        if op == "in":
            return Filter.in_(data["field"], data["values"])
        if op == "range":
            lo, hi = data.get("lower"), data.get("upper")
            return Filter.range(data["field"], **({"ge" if data.get("include_lower") else "gt": lo} if lo is not None else {}),
                                **({"le" if data.get("include_upper") else "lt": hi} if hi is not None else {}))
        if op == "contains":
            return Filter.contains(data["field"], data["value"])
        if op == "exists":
            return Filter.exists(data["field"])
        raise InvalidInputError(f"Filter.from_dict: op must be a known operator, got {op!r}.")

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
        """The expression in the string syntax; ``Filter.parse(f.to_text()) == f``."""
        raise NotImplementedError  # pragma: no cover


def _check_filter(value: Any, op: str) -> None:
    if not isinstance(value, Filter):
        raise InvalidInputError(f"Filter.{op}: operand must be a Filter, got {type(value).__name__}.")


def _flatten(f: Filter, kind: type) -> tuple[Filter, ...]:
    return f.children if isinstance(f, kind) else (f,)  # type: ignore[attr-defined]


def _lit(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
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

    def to_dict(self) -> dict:
        return {"op": "and", "children": [c.to_dict() for c in self.children]}

    def to_text(self) -> str:
        return "(" + " and ".join(c.to_text() for c in self.children) + ")"


@dataclass(frozen=True, eq=True)
class Or(Filter):
    children: tuple[Filter, ...]

    def to_dict(self) -> dict:
        return {"op": "or", "children": [c.to_dict() for c in self.children]}

    def to_text(self) -> str:
        return "(" + " or ".join(c.to_text() for c in self.children) + ")"


@dataclass(frozen=True, eq=True)
class Not(Filter):
    child: Filter

    def to_dict(self) -> dict:
        return {"op": "not", "child": self.child.to_dict()}

    def to_text(self) -> str:
        return f"not {self.child.to_text()}" if not isinstance(self.child, (And, Or)) else f"not {self.child.to_text()}"


def as_filter(value: Any, owner: str) -> Filter | None:
    """Accept ``None``, a :class:`Filter`, a filter string, or a :meth:`Filter.to_dict` dict."""
    if value is None or isinstance(value, Filter):
        return value
    if isinstance(value, str):
        return Filter.parse(value)
    if isinstance(value, dict):
        return Filter.from_dict(value)
    raise InvalidInputError(
        f"{owner}: filter must be a Filter, a filter string or None, got {type(value).__name__}. "
        "Build one with Filter.eq(...) or write 'field == \"value\"'."
    )
