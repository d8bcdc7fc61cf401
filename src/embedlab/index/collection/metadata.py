"""Typed metadata columns held in memory, and the evaluation of a :class:`Filter` into an exact row bitmap.

Each field has one type, declared at ``Collection.create(schema=...)`` or inferred from its first value:
``str``, ``int``, ``float``, ``bool`` or ``list[str]``. Strings are dictionary-encoded (int32 codes), so
``eq`` / ``in`` are vectorised integer compares; ``list[str]`` keeps (row, code) pairs for ``contains``.
A filter evaluates to a boolean mask over every stored row, which gives the planner the exact selectivity.

Typing rules: ints must fit in int64 (a larger int is refused, never rounded); an *inferred* ``int`` field that
is later given a float widens to ``float`` for good (stored rows keep their values, now as floats, so ``n == 2``
and ``n < 2.5`` mean what they meant; refused if a stored int is beyond 2**53, where a float would round it); a
field *declared* ``int`` in the schema stays ``int``. Field names follow
:data:`~embedlab.index.filters.syntax.FIELD_NAME` (any script: ``año``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from embedlab.errors import InvalidInputError, NotFoundError
from embedlab.index.filters.ast import And, Compare, Contains, Exists, Filter, Not, Or, Range, check_field
from embedlab.index.collection.storage import from_sql
from embedlab.index.filters.syntax import INT64_MAX, INT64_MIN
from embedlab.params import check_choice

FIELD_TYPES = ("str", "int", "float", "bool", "list[str]")
EXACT_FLOAT_INT = 2**53  # ints up to this magnitude survive a widening to float64 unchanged


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
    """``value`` as a plain Python value of ``ftype`` (ints widen to float), or raise ``TypeError`` whose message
    is the expectation (``"an int"``, ``"a finite float"``, ``"an int that fits in int64 ..."``)."""
    got = infer_type(value)
    if got == ftype:
        if ftype == "list[str]":
            return list(value)
        if ftype == "float":
            if not np.isfinite(value):
                raise TypeError("a finite float")
            return float(value)
        value = value.item() if isinstance(value, np.generic) else value
        if ftype == "int" and not INT64_MIN <= value <= INT64_MAX:
            raise TypeError("an int that fits in int64 ([-2**63, 2**63 - 1])")
        return value
    if ftype == "float" and got == "int":
        return float(value)
    raise TypeError(_a(ftype))


class Prepared(NamedTuple):
    """A validated metadata batch: fields to add (name -> type), inferred int fields that widen to float, rows."""

    new_fields: dict[str, str]
    widened: list[str]
    rows: list[dict[str, Any]]


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
        self.version = 0  # bumped by every change, so derived payload indexes know when to rebuild
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
        """Write already-coerced values (``None`` = missing) at ``rows``: appended rows grow the arrays, stored rows
        are overwritten (``update_metadata``)."""
        n = int(rows.max()) + 1 if len(rows) else 0
        self.version += 1
        if self.ftype == "list[str]" and len(rows) and int(rows.min()) < self.present.n:
            self._drop_entries(rows)
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

    def _drop_entries(self, rows: np.ndarray) -> None:
        """Forget the list entries of ``rows`` (before they are rewritten)."""
        keep = ~np.isin(self.entry_rows.view(), rows)
        if keep.all():
            return
        r, c = self.entry_rows.view()[keep], self.entry_codes.view()[keep]
        self.entry_rows.n = self.entry_codes.n = len(r)
        self.entry_rows.data[: len(r)], self.entry_codes.data[: len(c)] = r, c

    def widen_blocker(self) -> int | None:
        """A stored int that a float64 would round (blocks int -> float widening), or ``None``."""
        vals = self.values.view()[self.present.view()]
        big = vals[np.abs(vals) > EXACT_FLOAT_INT] if len(vals) else vals
        return int(big[0]) if len(big) else None

    def widen(self) -> None:
        """int -> float in place: stored values become float64, missing ones the float fill (NaN)."""
        old = self.values
        self.ftype = "float"
        self.version += 1
        self.values = Growable(np.float64, np.nan)
        self.values.resize(old.n)
        self.values.data[: old.n] = np.where(self.present.view()[: old.n], old.view(), np.nan) if old.n else []

    @staticmethod
    def _padded(g: Growable, n: int) -> np.ndarray:
        """``g``'s first ``n`` values (a view when it has them all, else padded with its fill)."""
        if g.n >= n:
            return g.data[:n]
        out = np.full(n, g.fill, dtype=g.data.dtype)
        out[: g.n] = g.view()
        return out

    def mask(self, node: Filter, n: int, owner: str, rows: np.ndarray | None = None) -> np.ndarray:
        """bool ``[n]``: rows ``0..n-1`` satisfying leaf ``node``; or bool ``[len(rows)]`` for the given ``rows``."""
        present = self._padded(self.present, n)
        if rows is not None:
            present = present[rows]
        if isinstance(node, Exists):
            return present.copy()
        if isinstance(node, Contains):
            if self.ftype != "list[str]":
                raise InvalidInputError(
                    f"{owner}: filter field {node.field!r} must be a list[str] field for 'contains', got a {self.ftype} "
                    f"field. Use == or in.")
            code = self.vocab.get(self._check(node.value, node.field, owner))
            out = np.zeros(n if rows is None else len(rows), dtype=bool)
            if code is not None:
                having = self.entry_rows.view()[self.entry_codes.view() == code]
                if rows is None:
                    out[having[having < n]] = True
                else:
                    out = np.isin(rows, having)
            return out
        if self.ftype == "list[str]":
            raise InvalidInputError(
                f"{owner}: filter on list[str] field {node.field!r} must use 'contains' or 'exists', got "
                f"{type(node).__name__.lower()}. Write: {node.field} contains \"value\".")
        vals = self._padded(self.values, n)
        if rows is not None:
            vals = vals[rows]
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
        if len(targets) == 1:  # one compare is 5-30x faster than np.isin's sort or table paths
            hit = vals == np.asarray(targets[0], dtype=vals.dtype)
        else:
            hit = np.isin(vals, np.asarray(targets, dtype=vals.dtype)) if targets else np.zeros(len(vals), dtype=bool)
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

    def __init__(self, schema: dict[str, str] | None = None, *, declared: Sequence[str] = ()) -> None:
        self.schema: dict[str, str] = {}
        self.columns: dict[str, Column] = {}
        self.declared = set(declared) | set(schema or {})  # fields typed by Collection.create(schema=): never widened
        for name, ftype in (schema or {}).items():
            self.add_field(name, ftype)

    def add_field(self, name: str, ftype: str) -> None:
        self.schema[name] = ftype
        self.columns[name] = Column(ftype)

    def widen(self, name: str) -> None:
        """Make int field ``name`` a float field (after :meth:`prepare` said so, or another process did it)."""
        if self.schema[name] == "int":
            self.columns[name].widen()
            self.schema[name] = "float"

    @staticmethod
    def check_schema(schema: Any, owner: str) -> dict[str, str]:
        if schema is None:
            return {}
        if not isinstance(schema, dict):
            raise InvalidInputError(f"{owner}: schema must be a dict of field -> type, got {type(schema).__name__}.")
        for name, ftype in schema.items():
            if not isinstance(name, str):
                raise InvalidInputError(f"{owner}: schema keys must be field names (str), got {name!r}.")
            check_field(name, owner, "schema keys")
            check_choice(ftype, FIELD_TYPES, owner, f"schema[{name!r}]")
        return dict(schema)

    def prepare(self, metadata: Any, n: int, owner: str) -> Prepared:
        """Validate a batch of ``n`` dicts (or ``None``) and type its values; nothing is changed here."""
        if metadata is None:
            return Prepared({}, [], [{} for _ in range(n)])
        if isinstance(metadata, (dict, str)) or not isinstance(metadata, Sequence) or len(metadata) != n:
            got = f"a {type(metadata).__name__}" if not isinstance(metadata, Sequence) else f"{len(metadata)} items"
            raise InvalidInputError(
                f"{owner}: metadata must be a list of {n} dicts (one per id) or None, got {got}.")
        new: dict[str, str] = {}
        widened: list[str] = []
        for i, item in enumerate(metadata):  # pass 1: every value's type, widening int fields that meet a float
            if item is None:
                continue
            if not isinstance(item, dict):
                raise InvalidInputError(f"{owner}: metadata[{i}] must be a dict or None, got {type(item).__name__}.")
            for key, value in item.items():
                if not isinstance(key, str):
                    raise InvalidInputError(f"{owner}: metadata[{i}] keys must be str, got {key!r}.")
                if value is None:
                    continue
                ftype = new.get(key) or self.schema.get(key)
                got = infer_type(value)
                if ftype is None:
                    check_field(key, owner, f"metadata[{i}] keys")
                    if got is None:
                        raise InvalidInputError(
                            f"{owner}: metadata[{i}][{key!r}] must be a str, int, float, bool or list of str, got "
                            f"{type(value).__name__}. Convert it to one of those types.")
                    new[key] = got
                elif ftype == "int" and got == "float" and key not in self.declared and key not in widened:
                    if key in new:  # a field this batch introduces
                        new[key] = "float"
                        continue
                    blocker = self.columns[key].widen_blocker()
                    if blocker is not None:
                        raise InvalidInputError(
                            f"{owner}: metadata[{i}][{key!r}] must be an int (the field holds {blocker}, which a "
                            f"float would round, so it cannot widen to float), got float {value!r}. Store it "
                            "as an int or in a new field.")
                    widened.append(key)
        rows = []
        for i, item in enumerate(metadata):  # pass 2: coerce to the (possibly widened) types
            row = {}
            for key, value in (item or {}).items():
                if value is None:
                    continue
                ftype = new.get(key) or ("float" if key in widened else self.schema[key])
                try:
                    row[key] = coerce(value, ftype)
                except TypeError as exc:
                    what, hint = ((f"{exc} (the field's type)", "Every value of a field has one type.")
                                  if "int64" not in str(exc) else (str(exc), "Store it as a float (e.g. 1e23) or a str."))
                    raise InvalidInputError(
                        f"{owner}: metadata[{i}][{key!r}] must be {what}, got {type(value).__name__} {value!r}. "
                        f"{hint}") from None
            rows.append(row)
        return Prepared(new, widened, rows)

    def apply(self, prepared: Prepared, rows: np.ndarray) -> None:
        """Commit a :meth:`prepare` d batch to memory at ``rows`` (after the database committed it)."""
        for name, ftype in prepared.new_fields.items():
            self.add_field(name, ftype)
        for name in prepared.widened:
            self.widen(name)
        for name, col in self.columns.items():
            col.set_rows(rows, [item.get(name) for item in prepared.rows])

    def sync_fields(self, fields: Sequence[tuple[str, str, str]]) -> None:
        """Follow the database's ``(name, type, col)`` fields: add new ones, widen int fields it widened."""
        for name, ftype, _ in fields:
            if name not in self.schema:
                self.add_field(name, ftype)
            elif self.schema[name] != ftype:
                self.widen(name)

    def ingest(self, fields: Sequence[tuple[str, str, str]], records: Sequence[tuple]) -> None:
        """Write database records ``(row, id, deleted, *field values)`` (new rows or rewritten ones) into memory."""
        if not records:
            return
        rows = np.fromiter((r[0] for r in records), dtype=np.int64, count=len(records))
        for j, (name, ftype, _) in enumerate(fields):
            self.columns[name].set_rows(rows, [from_sql(r[3 + j], ftype) for r in records])

    def rows(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """:meth:`row` for many rows at once (one pass over each list field, not one per row)."""
        out: list[dict[str, Any]] = [{} for _ in rows]
        if not len(rows):
            return out
        idx = np.asarray(rows, dtype=np.int64)
        for name, col in self.columns.items():
            inside = idx < col.present.n
            present = np.zeros(len(idx), dtype=bool)
            present[inside] = col.present.data[idx[inside]]
            if col.ftype == "list[str]":
                er, ec = col.entry_rows.view(), col.entry_codes.view()
                sel = np.isin(er, idx[present])
                lists: dict[int, list[str]] = {}
                for r, c in zip(er[sel].tolist(), ec[sel].tolist()):
                    lists.setdefault(r, []).append(col.words[c])
                for j in np.flatnonzero(present).tolist():
                    out[j][name] = lists.get(int(idx[j]), [])
                continue
            vals = col.values.data[idx[present]].tolist()
            for j, v in zip(np.flatnonzero(present).tolist(), vals):
                out[j][name] = col.words[v] if col.ftype == "str" else v
        return out

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

    def evaluate(self, node: Filter, n: int, owner: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask ``[n]``: rows that satisfy ``node`` (deleted rows are the caller's business); with ``rows``
        (int ``[m]``, each ``< n``), the mask ``[m]`` over those rows only (its cost grows with ``m``, not ``n``)."""
        if isinstance(node, And):
            out = self.evaluate(node.children[0], n, owner, rows)
            for c in node.children[1:]:
                out &= self.evaluate(c, n, owner, rows)
            return out
        if isinstance(node, Or):
            out = self.evaluate(node.children[0], n, owner, rows)
            for c in node.children[1:]:
                out |= self.evaluate(c, n, owner, rows)
            return out
        if isinstance(node, Not):
            return ~self.evaluate(node.child, n, owner, rows)
        col = self.columns.get(node.field)  # type: ignore[attr-defined]
        if col is None:
            known = sorted(self.columns) or "no fields yet"
            raise NotFoundError(
                f"{owner}: filter field must be one of the collection's metadata fields ({known}), got "
                f"{node.field!r}. Check the spelling or add documents with that field.")  # type: ignore[attr-defined]
        return col.mask(node, n, owner, rows)
