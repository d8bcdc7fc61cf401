"""Value types shared by every stage: plain arrays with their shapes spelled out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import numpy.typing as npt

from embedlab.errors import CancelledError, InvalidInputError

Embeddings = npt.NDArray[np.float32]
"""float32 array of shape ``[n, d]``; one row per text."""

ProgressCallback = Callable[[int, int], "bool | None"]
"""``callback(done, total)``; return ``False`` to cancel the operation (raises :class:`CancelledError`)."""


def report_progress(callback: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``callback(done, total)`` and raise :class:`CancelledError` if it returns ``False``."""
    if callback is not None and callback(done, total) is False:
        raise CancelledError(f"cancelled by the progress callback at {done}/{total}")


@dataclass(frozen=True)
class MultiVectors:
    """A ragged batch of vector sets (one set of token vectors per text).

    ``vectors`` is ``[N, d]`` (float32 or float16), ``offsets`` is int64 ``[n + 1]`` with
    ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == N``; item ``i`` is
    ``vectors[offsets[i]:offsets[i + 1]]``.
    """

    vectors: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        vectors, offsets = np.asarray(self.vectors), np.asarray(self.offsets)
        if vectors.ndim != 2:
            raise InvalidInputError(
                f"MultiVectors: vectors must have shape (N, d), got {vectors.shape}. "
                "Stack all token vectors into one 2-D array."
            )
        if vectors.dtype not in (np.float32, np.float16):
            raise InvalidInputError(
                f"MultiVectors: vectors must be float32 or float16, got {vectors.dtype}. Cast with .astype(np.float32)."
            )
        if offsets.ndim != 1 or offsets.size == 0 or not np.issubdtype(offsets.dtype, np.integer):
            raise InvalidInputError(
                f"MultiVectors: offsets must be a 1-D integer array of length n + 1, got {offsets.dtype} {offsets.shape}."
            )
        if offsets[0] != 0 or offsets[-1] != len(vectors) or np.any(np.diff(offsets) < 0):
            raise InvalidInputError(
                f"MultiVectors: offsets must start at 0, never decrease and end at N={len(vectors)}, "
                f"got first={offsets[0]}, last={offsets[-1]}, monotone={bool(np.all(np.diff(offsets) >= 0))}."
            )
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "offsets", offsets.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Token vectors of item ``i``: ``[n_i, d]``."""
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """int64 ``[n]``: number of vectors per item."""
        return np.diff(self.offsets)

    @classmethod
    def from_list(cls, items: list[np.ndarray]) -> "MultiVectors":
        """Build from a list of ``[n_i, d]`` arrays (all of one dimension)."""
        if not items:
            raise InvalidInputError("MultiVectors.from_list: items must be a non-empty list of (n_i, d) arrays, got [].")
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(a) for a in items])
        return cls(np.concatenate([np.asarray(a) for a in items], axis=0), offsets)


@dataclass(frozen=True)
class Hits:
    """Search results for a batch of queries; higher score is better.

    ``ids`` is ``[nq, k]`` (int64 positions padded with -1, or the caller's ids padded with ``None``
    in an object array), ``scores`` is float32 ``[nq, k]`` padded with ``-inf``. ``strategy`` names
    how each query was answered (e.g. the filter planner's choice), one string per query, or is empty.
    ``payload`` is ``None`` unless asked for (``Collection.search(..., include=("text", "metadata"))``):
    then one list per query, aligned with ``ids``: ``payload[i][j]`` is a dict holding the included
    names (``"text"``, ``"metadata"``, ``"vector"``) for hit ``ids[i, j]``, or ``None`` for padding.
    """

    ids: np.ndarray
    scores: np.ndarray
    strategy: tuple[str, ...] = field(default=())
    payload: tuple[list, ...] | list | None = field(default=None)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> "Hits":
        """The hits of query ``i``: a ``Hits`` whose ``ids`` and ``scores`` are 1-D ``[k]``, padding dropped (and
        ``payload``, when present, that query's list of dicts)."""
        if self.ids.ndim != 2:
            raise InvalidInputError("Hits: already a single query's hits; index the arrays directly.")
        keep = np.isfinite(self.scores[i])
        strategy = (self.strategy[i],) if self.strategy else ()
        payload = None if self.payload is None else [p for p, k in zip(self.payload[i], keep.tolist()) if k]
        return Hits(self.ids[i][keep], self.scores[i][keep], strategy, payload)
