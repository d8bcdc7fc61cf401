"""The everyday operations around ``add`` / ``search`` (what Qdrant, LanceDB and Milvus users expect), as plain
functions over a collection's in-memory parts; :class:`~embedlab.index.Collection`'s methods hold its mutex and
call them.

- search options: ``offset`` (paging; at most :data:`MAX_SEARCH_OFFSET`, deeper listing is :meth:`scroll`'s job),
  ``min_score`` (a score threshold: weaker hits become padding) and ``include`` (payloads on the hits);
- ``scroll``: every live id matching a filter, in ascending id order, a page at a time. The cursor is the last id
  of a page, so paging survives concurrent inserts, deletes, upserts and compaction: an id is listed at most once,
  an id present for the whole scroll is listed exactly once, and one inserted meanwhile is listed iff it sorts
  after the cursor.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import numpy as np

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.params import check_int

INCLUDE = ("metadata", "text", "vector")
"""What ``include=`` may ask for on each hit or scrolled item (``id`` is always there)."""
MAX_SEARCH_OFFSET = 10_000
"""Deepest ``offset`` of :meth:`Collection.search` (like Elasticsearch's result window); list more with ``scroll``."""
MAX_SCROLL_LIMIT = 10_000
"""Largest page of :meth:`Collection.scroll`."""


def check_include(include: Any, owner: str, vectors_supported: bool = True) -> tuple[str, ...]:
    """``include`` as a tuple of :data:`INCLUDE` names (a single name is accepted)."""
    if include is None or include == ():  # the default: nothing to check on the search hot path
        return ()
    items = (include,) if isinstance(include, str) else include
    if not isinstance(items, (list, tuple, set, frozenset)) or not all(isinstance(i, str) for i in items):
        raise InvalidInputError(f"{owner}: include must be a tuple of names from {list(INCLUDE)}, got {include!r}.")
    bad = [i for i in items if i not in INCLUDE]
    if bad:
        raise InvalidInputError(f"{owner}: include must only name {list(INCLUDE)}, got {bad[0]!r}.")
    if "vector" in items and not vectors_supported:
        raise UnsupportedError(f"{owner}: include must not ask for 'vector' on a multi-vector collection, got "
                               "'vector' (its stored rows are encodings, not the token vectors). Include 'text' "
                               "and re-encode, or keep the token vectors beside the collection.")
    return tuple(i for i in INCLUDE if i in items)


def check_offset(offset: Any, owner: str) -> int:
    if offset.__class__ is int and offset == 0:  # the default, on the search hot path
        return 0
    return check_int(offset, owner, "offset", low=0, high=MAX_SEARCH_OFFSET,
                     hint="List deeper with Collection.scroll(filter=..., cursor=...).")


def check_min_score(min_score: Any, owner: str) -> float | None:
    if min_score is None:
        return None
    if isinstance(min_score, (bool, np.bool_)) or not isinstance(min_score, (int, float, np.integer, np.floating)) \
            or min_score != min_score:
        raise InvalidInputError(f"{owner}: min_score must be a number (scores are higher-is-better) or None, got "
                                f"{min_score!r}.")
    return float(min_score)


def page(scores: np.ndarray, rows: np.ndarray, offset: int, min_score: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Drop the first ``offset`` columns and turn hits scoring below ``min_score`` into padding (-1 / -inf)."""
    if offset:
        scores, rows = scores[:, offset:], rows[:, offset:]
    if min_score is not None:
        low = ~(scores >= min_score)
        if low.any():
            scores = np.where(low, np.float32(-np.inf), scores).astype(np.float32, copy=False)
            rows = np.where(low, -1, rows)
    return scores, rows


def payloads(rows: np.ndarray, include: tuple[str, ...], meta, db, vectors: np.ndarray) -> tuple[list, ...]:
    """Per query, per hit: ``{name: value}`` for ``include`` (``None`` where ``rows`` is -1 padding)."""
    records = dict(zip(*fetch(np.unique(rows[rows >= 0]).tolist(), include, meta, db, vectors)))
    return tuple([records.get(r) for r in q.tolist()] for q in rows)


def fetch(rows: list[int], include: tuple[str, ...], meta, db, vectors: np.ndarray) -> tuple[list[int], list[dict]]:
    """``(rows, [{name: value} per row])`` for the ``include`` names."""
    out: list[dict] = [{} for _ in rows]
    if "metadata" in include:
        for o, m in zip(out, meta.rows(rows)):
            o["metadata"] = m
    if "text" in include:
        texts = db.texts(rows)
        for o, r in zip(out, rows):
            o["text"] = texts.get(r)
    if "vector" in include:
        for o, r in zip(out, rows):
            o["vector"] = np.array(vectors[r])
    return rows, out


class _IdOrder:
    """Every stored row's id in ascending order (dead rows too): ``keys`` (int64 or str array) and ``order``."""

    def __init__(self, ids: np.ndarray) -> None:
        kind = np.int64 if len(ids) and isinstance(ids[0], int) else str
        self.keys_unsorted = ids.astype(kind) if len(ids) else np.zeros(0, np.int64)
        self.order = np.argsort(self.keys_unsorted, kind="stable")
        self.keys = self.keys_unsorted[self.order]
        self.rows = len(ids)


_ORDERS: "weakref.WeakKeyDictionary[Any, _IdOrder]" = weakref.WeakKeyDictionary()  # per Mirror (rebuilt on reload)


def scroll(mirror, mask: np.ndarray | None, limit: int, cursor: Any) -> tuple[np.ndarray, bool]:
    """Rows of the first ``limit`` live ids above ``cursor`` (``None``: from the start) in ``mask`` (``None``:
    every live row), in id order, and whether more may follow."""
    order = _ORDERS.get(mirror)
    if order is None or order.rows != mirror.rows:  # rows are only appended between reloads
        order = _ORDERS[mirror] = _IdOrder(mirror.ids.view())
    keep = mirror.alive.view() if mask is None else mask
    pos = 0 if cursor is None else int(np.searchsorted(order.keys, cursor, side="right"))
    found: list[np.ndarray] = []
    got, chunk = 0, max(2 * limit, 1024)
    while pos < len(order.order) and got <= limit:  # one past the page tells whether more follow
        cand = order.order[pos : pos + chunk]
        hit = cand[keep[cand]]
        found.append(hit)
        got += len(hit)
        pos += chunk
        chunk *= 2
    rows = np.concatenate(found) if found else np.zeros(0, np.int64)
    return rows[:limit], len(rows) > limit


def check_cursor(cursor: Any, id_kind: str | None, owner: str) -> Any:
    """``cursor``: ``None`` or an id of the collection's kind (the last id of the previous page)."""
    if cursor is None:
        return None
    ok = isinstance(cursor, str) if id_kind == "str" else (
        isinstance(cursor, (int, np.integer)) and not isinstance(cursor, (bool, np.bool_)))
    if id_kind is None:
        ok = isinstance(cursor, (str, int, np.integer)) and not isinstance(cursor, (bool, np.bool_))
    if not ok:
        raise InvalidInputError(f"{owner}: cursor must be None or the next_cursor a previous scroll returned (a "
                                f"{id_kind or 'str or int'} id), got {type(cursor).__name__} {cursor!r}.")
    return int(cursor) if not isinstance(cursor, str) else cursor


def merge_updates(current: Sequence[dict], updates: Sequence[Any], typed: Sequence[dict], replace: bool) -> list[dict]:
    """The metadata rows after an update: ``current`` rows, with each ``updates[i]``'s keys set to their validated
    values ``typed[i]`` (a ``None`` value removes the key); ``replace`` starts from an empty dict instead."""
    out = []
    for cur, upd, typ in zip(current, updates, typed):
        row = {} if replace else dict(cur)
        for key, value in (upd or {}).items():
            if value is None:
                row.pop(key, None)
            else:
                row[key] = typ[key]
        out.append(row)
    return out
