"""Typed metadata columns held in memory, and the evaluation of a :class:`Filter` into an exact row bitmap.

Each field has one type, declared at ``Collection.create(schema=...)`` or inferred from its first value:
``str``, ``int``, ``float``, ``bool`` or ``list[str]``. Strings are dictionary-encoded (int32 codes), so
``eq`` / ``in`` are vectorised integer compares; ``list[str]`` keeps (row, code) pairs for ``contains``.
A filter evaluates to a boolean mask over every stored row, which gives the planner the exact selectivity.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from embedlab.errors import InvalidInputError, NotFoundError
from embedlab.index.filters.ast import And, Compare, Contains, Exists, Filter, Not, Or, Range
from embedlab.params import check_choice

FIELD_TYPES = ("str", "int", "float", "bool", "list[str]")


def infer_type(value: Any) -> str | None:
    """The field type of one Python value, or ``None`` when it has none of the supported types."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "list[str]"
    return None


def _a(ftype: str) -> str:
    return ("an " if ftype == "int" else "a ") + ftype


def coerce(value: Any, ftype: str) -> Any:
    """``value`` as a plain Python value of ``ftype``, or raise ``TypeError`` (ints widen to float)."""
    got = infer_type(value)
    if got == ftype:
        if ftype == "list[str]":
            return list(value)
        if ftype == "float":
            if not np.isfinite(value):
                raise TypeError("a finite float")
            return float(value)
        return value.item() if isinstance(value, np.generic) else value
    if ftype == "float" and got == "int":
        return float(value)
    raise TypeError(ftype)


class Growable:
    """A 1-D numpy array with amortised appends."""

    def __init__(self, dtype, fill) -> None:
        self.fill = fill
        self.data = np.full(16, fill, dtype=dtype)
        self.n = 0

    def resize(self, n: int) -> None:
        if n > len(self.data):
            new = np.full(max(n, 2 * len(self.data)), self.fill, dtype=self.data.dtype)
            new[: self.n] = self.data[: self.n]
            self.data = new
        self.n = n

    def view(self) -> np.ndarray:
        return self.data[: self.n]


class Column:
    """One field's values for rows ``0..n-1`` (missing values allowed)."""

    def __init__(self, ftype: str) -> None:
        self.ftype = ftype
        self.present = Growable(bool, False)
        if ftype in ("str", "list[str]"):
            self.vocab: dict[str, int] = {}
            self.words: list[str] = []
        if ftype == "list[str]":
            self.entry_rows = Growable(np.int64, -1)
            self.entry_codes = Growable(np.int32, -1)
            self.values = None
        else:
            dtype, fill = {"str": (np.int32, -1), "int": (np.int64, 0), "float": (np.float64, np.nan),
                           "bool": (np.bool_, False)}[ftype]
            self.values = Growable(dtype, fill)

    def code(self, word: str) -> int:
        c = self.vocab.get(word)
        if c is None:
            c = self.vocab[word] = len(self.words)
            self.words.append(word)
        return c

    def set_rows(self, rows: np.ndarray, values: Sequence[Any]) -> None:
        """Write already-coerced values (``None`` = missing) at ``rows`` (appended rows only grow the arrays)."""
        n = int(rows.max()) + 1 if len(rows) else 0
        if n > self.present.n:
            self.present.resize(n)
            if self.values is not None:
                self.values.resize(n)
        has = np.array([v is not None for v in values], dtype=bool)
        self.present.data[rows] = has
        if self.ftype == "list[str]":
            r, c = [], []
            for row, v in zip(rows.tolist(), values):
                if v:
                    r.extend([row] * len(v))
                    c.extend(self.code(w) for w in v)
            if r:
                m = self.entry_rows.n
                self.entry_rows.resize(m + len(r))
                self.entry_codes.resize(m + len(r))
                self.entry_rows.data[m : m + len(r)] = r
                self.entry_codes.data[m : m + len(c)] = c
            return
        if self.ftype == "str":
            vals = [self.code(v) if v is not None else -1 for v in values]
        else:
            vals = [v if v is not None else self.values.fill for v in values]
        self.values.data[rows] = np.asarray(vals, dtype=self.values.data.dtype)

    @staticmethod
    def _padded(g: Growable, n: int) -> np.ndarray:
        """``g``'s first ``n`` values (a view when it has them all, else padded with its fill)."""
        if g.n >= n:
            return g.data[:n]
        out = np.full(n, g.fill, dtype=g.data.dtype)
        out[: g.n] = g.view()
        return out

    def mask(self, node: Filter, n: int, owner: str) -> np.ndarray:
        present = self._padded(self.present, n)
        if isinstance(node, Exists):
            return present.copy()
        if isinstance(node, Contains):
            if self.ftype != "list[str]":
                raise InvalidInputError(
                    f"{owner}: filter field {node.field!r} must be a list[str] field for 'contains', got a {self.ftype} "
                    f"field. Use == or in.")
            code = self.vocab.get(self._check(node.value, node.field, owner))
            out = np.zeros(n, dtype=bool)
            if code is not None:
                rows = self.entry_rows.view()[self.entry_codes.view() == code]
                out[rows[rows < n]] = True
            return out
        if self.ftype == "list[str]":
            raise InvalidInputError(
                f"{owner}: filter on list[str] field {node.field!r} must use 'contains' or 'exists', got "
                f"{type(node).__name__.lower()}. Write: {node.field} contains \"value\".")
        vals = self._padded(self.values, n)
        if isinstance(node, Range):
            if self.ftype not in ("int", "float"):
                raise InvalidInputError(
                    f"{owner}: filter field {node.field!r} must be numeric for a range (<, <=, >, >=), got a "
                    f"{self.ftype} field. Use == or in.")
            out = present.copy()
            if node.lower is not None:
                out &= (vals >= node.lower) if node.include_lower else (vals > node.lower)
            if node.upper is not None:
                out &= (vals <= node.upper) if node.include_upper else (vals < node.upper)
            return out
        if isinstance(node, Compare):
            targets = [node.value]
        else:  # In
            targets = list(node.values)
        targets = [self._check(v, node.field, owner) for v in targets]
        if self.ftype == "str":
            targets = [self.vocab[t] for t in targets if t in self.vocab]
        hit = np.isin(vals, np.asarray(targets, dtype=vals.dtype)) if targets else np.zeros(n, dtype=bool)
        if isinstance(node, Compare) and node.op == "!=":
            return present & ~hit
        return present & hit

    def _check(self, value: Any, field: str, owner: str) -> Any:
        want = "str" if self.ftype == "list[str]" else self.ftype
        try:
            return coerce(value, want)
        except TypeError:
            raise InvalidInputError(
                f"{owner}: filter value for {field!r} must be {_a(want)} (the field's type), got "
                f"{type(value).__name__} {value!r}. Compare with {_a(want)} value.") from None

    def get(self, row: int) -> Any:
        if row >= self.present.n or not self.present.data[row]:
            return None
        if self.ftype == "list[str]":
            sel = self.entry_rows.view() == row
            return [self.words[c] for c in self.entry_codes.view()[sel]]
        v = self.values.data[row]
        return self.words[int(v)] if self.ftype == "str" else v.item()


class MetadataTable:
    """Every field's :class:`Column` plus the schema; validation happens before any state changes."""

    def __init__(self, schema: dict[str, str] | None = None) -> None:
        self.schema: dict[str, str] = {}
        self.columns: dict[str, Column] = {}
        for name, ftype in (schema or {}).items():
            self.add_field(name, ftype)

    def add_field(self, name: str, ftype: str) -> None:
        self.schema[name] = ftype
        self.columns[name] = Column(ftype)

    @staticmethod
    def check_schema(schema: Any, owner: str) -> dict[str, str]:
        if schema is None:
            return {}
        if not isinstance(schema, dict):
            raise InvalidInputError(f"{owner}: schema must be a dict of field -> type, got {type(schema).__name__}.")
        for name, ftype in schema.items():
            if not isinstance(name, str):
                raise InvalidInputError(f"{owner}: schema keys must be field names (str), got {name!r}.")
            Filter.exists(name)  # validates the name
            check_choice(ftype, FIELD_TYPES, owner, f"schema[{name!r}]")
        return dict(schema)

    def prepare(self, metadata: Any, n: int, owner: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Validate a batch: returns ``(new_fields, coerced rows)``; nothing is changed here."""
        if metadata is None:
            return {}, [{} for _ in range(n)]
        if isinstance(metadata, dict) or not isinstance(metadata, Sequence) or len(metadata) != n:
            got = f"a {type(metadata).__name__}" if not isinstance(metadata, Sequence) else f"{len(metadata)} items"
            raise InvalidInputError(
                f"{owner}: metadata must be a list of {n} dicts (one per id) or None, got {got}.")
        new: dict[str, str] = {}
        rows = []
        for i, item in enumerate(metadata):
            if item is None:
                rows.append({})
                continue
            if not isinstance(item, dict):
                raise InvalidInputError(f"{owner}: metadata[{i}] must be a dict or None, got {type(item).__name__}.")
            row = {}
            for key, value in item.items():
                if not isinstance(key, str):
                    raise InvalidInputError(f"{owner}: metadata[{i}] keys must be str, got {key!r}.")
                if value is None:
                    continue
                ftype = self.schema.get(key) or new.get(key)
                if ftype is None:
                    Filter.exists(key)  # validates the name
                    ftype = infer_type(value)
                    if ftype is None:
                        raise InvalidInputError(
                            f"{owner}: metadata[{i}][{key!r}] must be a str, int, float, bool or list of str, got "
                            f"{type(value).__name__}. Convert it to one of those types.")
                    new[key] = ftype
                try:
                    row[key] = coerce(value, ftype)
                except TypeError as exc:
                    what = "a finite float" if str(exc) == "a finite float" else _a(ftype)
                    raise InvalidInputError(
                        f"{owner}: metadata[{i}][{key!r}] must be {what} (the field's type), got "
                        f"{type(value).__name__} {value!r}. Every value of a field has one type.") from None
            rows.append(row)
        return new, rows

    def apply(self, new_fields: dict[str, str], rows: np.ndarray, items: list[dict[str, Any]]) -> None:
        for name, ftype in new_fields.items():
            self.add_field(name, ftype)
        for name, col in self.columns.items():
            col.set_rows(rows, [item.get(name) for item in items])

    def row(self, r: int) -> dict[str, Any]:
        out = {}
        for name, col in self.columns.items():
            v = col.get(r)
            if v is not None:
                out[name] = v
        return out

    def validate(self, node: Filter, owner: str) -> None:
        """Raise for unknown fields or wrongly typed values, whether or not any row exists."""
        self.evaluate(node, 0, owner)

    def evaluate(self, node: Filter, n: int, owner: str) -> np.ndarray:
        """Boolean mask ``[n]``: rows that satisfy ``node`` (deleted rows are the caller's business)."""
        if isinstance(node, And):
            out = self.evaluate(node.children[0], n, owner)
            for c in node.children[1:]:
                out &= self.evaluate(c, n, owner)
            return out
        if isinstance(node, Or):
            out = self.evaluate(node.children[0], n, owner)
            for c in node.children[1:]:
                out |= self.evaluate(c, n, owner)
            return out
        if isinstance(node, Not):
            return ~self.evaluate(node.child, n, owner)
        col = self.columns.get(node.field)  # type: ignore[attr-defined]
        if col is None:
            known = sorted(self.columns) or "no fields yet"
            raise NotFoundError(
                f"{owner}: filter field must be one of the collection's metadata fields ({known}), got "
                f"{node.field!r}. Check the spelling or add documents with that field.")  # type: ignore[attr-defined]
        return col.mask(node, n, owner)
