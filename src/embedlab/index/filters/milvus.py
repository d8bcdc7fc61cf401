"""A :class:`~embedlab.index.filters.ast.Filter` as a Milvus boolean expression.

The Milvus backend (:mod:`embedlab.index.collection.milvus`) stores fields declared in the collection's schema as
typed nullable columns (``columns`` maps such a field to its column, e.g. ``pos`` -> ``m_pos``) and every other
field in one JSON field (``meta``), where a condition on ``pos`` reads ``meta["pos"]``. Milvus evaluates a
comparison on a missing value as *null* and ``not null`` is null (three-valued logic), whereas a filter here is
two-valued: a comparison on a field a document lacks is false, and ``~f`` keeps it. Every condition is therefore
guarded by a test that is never null (``m_pos is not null``, or ``exists meta["pos"]``): ``pos == "noun"`` becomes
``(m_pos is not null and m_pos == "noun")`` and its negation then means what :mod:`~embedlab.index.filters.ast`
says. Milvus cannot put a JSON path on the left of ``in``, so ``in`` becomes a chain of ``==`` (bounded by
:data:`~embedlab.index.filters.syntax.MAX_FILTER_TERMS` values).

String literals are double-quoted with ``\\`` and ``"`` escaped and ``\\n``, ``\\t``, ``\\r`` written as escapes
(other characters, any script and control characters included, pass through as they are: Milvus reads them
literally). What Milvus cannot express raises ``UnsupportedError`` instead of being dropped: a non-finite
float (``inf``) as a value or bound.
"""

from __future__ import annotations

import math
from typing import Mapping

from embedlab.errors import UnsupportedError
from embedlab.index.filters.ast import And, Compare, Contains, Exists, Filter, In, Not, Or, Range

META_FIELD = "meta"  # the JSON field holding an item's metadata


def to_milvus(node: Filter, columns: Mapping[str, str] | None = None, owner: str = "Collection.search") -> str:
    """The Milvus expression for ``node`` (whose fields and value types the caller has already validated);
    ``columns``: field -> typed column, for the fields that have one."""
    columns = columns or {}
    if isinstance(node, And):
        return "(" + " and ".join(to_milvus(c, columns, owner) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " or ".join(to_milvus(c, columns, owner) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"(not {to_milvus(node.child, columns, owner)})"
    column = columns.get(node.field)  # type: ignore[attr-defined]
    if column is not None:
        path, present, contains = column, f"{column} is not null", "array_contains"
    else:  # field names hold no quote (FIELD_NAME)
        path = f'{META_FIELD}["{node.field}"]'  # type: ignore[attr-defined]
        present, contains = f"exists {path}", "json_contains"
    if isinstance(node, Exists):
        return f"({present})"
    if isinstance(node, Compare):
        test = f"{path} {node.op} {literal(node.value, owner)}"
    elif isinstance(node, In) and column is not None:
        test = f"{path} in [{', '.join(literal(v, owner) for v in node.values)}]"
    elif isinstance(node, In):
        test = "(" + " or ".join(f"{path} == {literal(v, owner)}" for v in node.values) + ")"
    elif isinstance(node, Range):
        bounds = []
        if node.lower is not None:
            bounds.append(f"{path} {'>=' if node.include_lower else '>'} {literal(node.lower, owner)}")
        if node.upper is not None:
            bounds.append(f"{path} {'<=' if node.include_upper else '<'} {literal(node.upper, owner)}")
        test = " and ".join(bounds)
    elif isinstance(node, Contains):
        test = f"{contains}({path}, {literal(node.value, owner)})"
    else:  # pragma: no cover - every node kind is handled above
        raise UnsupportedError(f"{owner}: filter node {type(node).__name__} has no Milvus translation.")
    return f"({present} and {test})"


def literal(value, owner: str) -> str:
    """A Milvus literal for a filter value (str, int, float or bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsupportedError(
            f"{owner}: filter values must be finite for the Milvus backend, got {value!r}, which a Milvus expression "
            "cannot write. Drop the bound (every stored number is finite) or use a large finite number.")
    return repr(value)
