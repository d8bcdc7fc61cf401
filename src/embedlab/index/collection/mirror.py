"""The in-memory copy of a collection's per-row state: caller ids, alive flags and the id -> row map.

SQLite (:mod:`embedlab.index.collection.storage`) is the source of truth; a :class:`Mirror` is rebuilt from its
rows on open and kept in step after every committed write, so searches map rows to ids and check liveness
without touching the database.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from embedlab.errors import NotFoundError
from embedlab.index.collection.metadata import Growable


class Mirror:
    """``ids`` (object ``[rows]``), ``alive`` (bool ``[rows]``) and ``row_of`` (live id -> row) of stored rows."""

    def __init__(self) -> None:
        self.ids = Growable(object, None)
        self.alive = Growable(bool, False)
        self.row_of: dict[Any, int] = {}
        self.rows = 0  # rows mirrored so far (0 .. rows - 1)

    def __len__(self) -> int:
        """Number of live ids."""
        return len(self.row_of)

    def ingest(self, records: Sequence[tuple]) -> list[tuple]:
        """Apply database records ``(row, id, deleted, ...)`` ordered by row; returns the records of new rows."""
        new = [r for r in records if r[0] >= self.rows]
        for r in records:
            if r[0] < self.rows and r[2]:
                self._kill(r[0])
        if new:
            rows = np.fromiter((r[0] for r in new), dtype=np.int64, count=len(new))
            alive = np.fromiter((not r[2] for r in new), dtype=bool, count=len(new))
            ids = [r[1] for r in new]
            self._grow(int(rows[-1]) + 1)
            self.ids.data[rows] = _objects(ids)
            self.alive.data[rows] = alive
            self.row_of.update((i, row) for row, i, a in zip(rows.tolist(), ids, alive.tolist()) if a)
        return new

    def append(self, start: int, ids: list, replaced: np.ndarray) -> None:
        """Rows ``start .. start + len(ids) - 1`` now hold ``ids``; the ``replaced`` rows (upserts) are dead."""
        self.alive.data[replaced] = False
        end = start + len(ids)
        self._grow(end)
        self.ids.data[start:end] = _objects(ids)
        self.alive.data[start:end] = True
        self.row_of.update(zip(ids, range(start, end)))

    def delete(self, ids: list) -> None:
        """Mark the rows of ``ids`` (every one live) dead."""
        rows = self.rows_of(ids)
        self.alive.data[rows] = False
        for i in ids:
            del self.row_of[i]

    def rows_of(self, ids: list) -> np.ndarray:
        """int64 rows of live ``ids`` (every one must be live; see :meth:`require`)."""
        return np.array([self.row_of[i] for i in ids], dtype=np.int64)

    def existing(self, ids: list) -> list:
        """The ``ids`` that are live."""
        return [i for i in ids if i in self.row_of]

    def require(self, ids: list, owner: str) -> None:
        """Raise :class:`NotFoundError` unless every id is live."""
        missing = [i for i in ids if i not in self.row_of]
        if missing:
            raise NotFoundError(f"{owner}: ids must exist, got {len(missing)} unknown (first: {missing[0]!r}).")

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """Caller ids (object array) for int rows of any shape, ``None`` where a row is ``-1``."""
        ids = self.ids.data[np.maximum(rows, 0)].astype(object, copy=False)  # fancy indexing: a new array
        ids[rows < 0] = None
        return ids

    def _kill(self, row: int) -> None:
        self.alive.data[row] = False
        if self.row_of.get(self.ids.data[row]) == row:
            del self.row_of[self.ids.data[row]]

    def _grow(self, end: int) -> None:
        self.ids.resize(end)
        self.alive.resize(end)
        self.rows = max(self.rows, end)


def _objects(ids: list) -> np.ndarray:
    """``ids`` as a 1-D object array (a trailing ``None`` stops numpy from building a 2-D array of tuples)."""
    return np.array(ids + [None], dtype=object)[:-1]
