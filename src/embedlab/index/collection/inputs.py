"""Validation of what callers hand to a :class:`~embedlab.index.Collection` (ids, vectors, texts, k, ef).

Every check runs before anything is written, so a rejected batch leaves the collection unchanged.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import faiss
import numpy as np

import embedlab

from embedlab.errors import InvalidInputError
from embedlab.params import check_int

METRICS = ("cosine", "ip", "l2")
MAX_K = 10_000  # the largest k per query; results are always [nq, k], so k bounds the memory of a call
MAX_RESULTS = 4_000_000  # the largest nq * k per call (ids, scores and rows: ~80 MB); split bigger batches
MAX_NORM = 1e15  # ip / l2 rows and queries: a norm <= 1e15 keeps every score (q.x, -|q - x|^2) finite in float32


def check_ids(ids: Any, owner: str, id_kind: str | None) -> tuple[list, str | None]:
    """``ids`` as a list of str or of int (one kind per collection), without duplicates."""
    if isinstance(ids, (str, bytes, int, np.integer)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise InvalidInputError(
            f"{owner}: ids must be a list of str or int, got {type(ids).__name__}. Wrap a single id in a list.")
    out = []
    kinds = set()
    for i, value in enumerate(ids):
        if isinstance(value, (bool, np.bool_)):
            raise InvalidInputError(f"{owner}: ids must be str or int, got bool at index {i}.")
        if isinstance(value, (int, np.integer)):
            if not -(2**63) <= int(value) < 2**63:
                raise InvalidInputError(f"{owner}: int ids must fit in 64 bits, got {value} at index {i}.")
            out.append(int(value))
            kinds.add("int")
        elif isinstance(value, str):
            if not value:
                raise InvalidInputError(f"{owner}: ids must be non-empty, got '' at index {i}.")
            out.append(value)
            kinds.add("str")
        else:
            raise InvalidInputError(f"{owner}: ids must be str or int, got {type(value).__name__} at index {i}.")
    if len(kinds) > 1:
        raise InvalidInputError(f"{owner}: ids must be all str or all int, got a mix. Convert them to one kind.")
    kind = kinds.pop() if kinds else id_kind
    if id_kind is not None and kind != id_kind:
        raise InvalidInputError(
            f"{owner}: ids must be {id_kind} like the collection's existing ids, got {kind}. "
            f"Convert them, e.g. {'str(i)' if id_kind == 'str' else 'int(i)'}.")
    if len(set(out)) != len(out):
        seen, dup = set(), None
        for v in out:
            if v in seen:
                dup = v
                break
            seen.add(v)
        raise InvalidInputError(f"{owner}: ids must be unique within a batch, got {dup!r} more than once.")
    return out, kind


def check_vectors(vectors: Any, n: int, dim: int, owner: str, name: str = "vectors") -> np.ndarray:
    """float32 ``[n, dim]``, finite."""
    try:
        arr = np.asarray(vectors)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInputError(f"{owner}: {name} must be a float array of shape ({n}, {dim}), got {type(vectors).__name__}.")
    if arr.ndim != 2 or arr.shape != (n, dim):
        fix = ("Encode with the collection's model or create a new collection." if arr.ndim == 2 and arr.shape[0] == n
               else f"Pass one row per {'query' if name == 'queries' else 'id'}.")
        raise InvalidInputError(f"{owner}: {name} must have shape ({n}, {dim}), got {arr.shape}. {fix}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size:  # a NaN or inf makes its row's squared norm NaN or inf (so does a finite row that overflows it)
        suspects = np.flatnonzero(~np.isfinite(row_sq_norms(arr)))
        bad = [int(r) for r in suspects if not np.isfinite(arr[r]).all()]
        if bad:
            raise InvalidInputError(f"{owner}: {name} must be finite, got NaN or inf in row {bad[0]}. Drop or fix "
                                    "that row.")
    return arr


def row_sq_norms(arr: np.ndarray) -> np.ndarray:
    """Squared L2 norms float32 ``[n]`` of the rows of C-contiguous float32 ``arr [n, d]``, in one pass (faiss's
    SIMD kernel, threaded: 1000 x 384 in 0.02 ms, 3x numpy's einsum); an overflow is ``inf``."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)  # faiss reads the raw buffer
    out = np.empty(len(arr), dtype=np.float32)
    faiss.fvec_norms_L2sqr(faiss.swig_ptr(out), faiss.swig_ptr(arr), arr.shape[1], len(arr))
    return out


def prepare_vectors(arr: np.ndarray, metric: str, owner: str, name: str = "vectors") -> np.ndarray:
    """Unit-normalise rows for cosine (a zero row has no direction and is rejected); for ``ip`` and ``l2``, refuse
    rows whose norm passes :data:`MAX_NORM` (their scores would overflow float32 to ``inf`` and rank as padding)."""
    if len(arr) == 0:
        return arr
    if metric != "cosine":
        sq = row_sq_norms(arr)  # an overflow is inf, which fails the test below too
        if not sq.max() <= MAX_NORM**2:
            bad = int(np.flatnonzero(~(sq <= MAX_NORM**2))[0])
            norm = float(np.linalg.norm(arr[bad].astype(np.float64)))
            raise InvalidInputError(
                f"{owner}: {name} must have an L2 norm <= {MAX_NORM:.0e} for metric {metric!r} (so scores stay finite "
                f"in float32), got {norm:.3g} in row {bad}. Rescale the vectors (or use metric='cosine').")
        return arr
    sq = row_sq_norms(arr)  # float32: 5x faster than float64 on a query batch ...
    odd = ~((sq > 0) & (sq < np.inf))
    if odd.any():  # ... redone in float64 where it under- or overflowed (or the row is truly zero)
        sq = sq.astype(np.float64)
        sq[odd] = np.einsum("ij,ij->i", arr[odd], arr[odd], dtype=np.float64)
    norms = np.sqrt(sq)[:, None]
    if (norms == 0).any():
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise InvalidInputError(f"{owner}: {name} must be non-zero for cosine, got an all-zero row {bad}.")
    if np.abs(norms - 1).max() < 1e-6:  # already unit rows (an encoder's output): keep them as they are
        return arr
    return (arr / norms).astype(np.float32)


_PACKAGE = str(Path(embedlab.__file__).resolve().parent)


@contextlib.contextmanager
def warnings_at_caller() -> Iterator[None]:
    """Re-issue the warnings raised inside (e.g. the encoder's truncation warning while ``Collection.add`` encodes
    ``texts``) at the first stack frame outside embedlab: the caller's line, not the collection's. The caller's
    warning filters then apply as usual. (``warnings.catch_warnings`` swaps process-wide state for the duration,
    so this wraps only the encoding of texts.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=_caller_level())


def _caller_level() -> int:
    """The ``stacklevel`` that names the first frame outside embedlab (and contextlib), seen from the caller."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                 or frame.f_code.co_filename == contextlib.__file__):
        frame, level = frame.f_back, level + 1
    return level


def check_texts(texts: Any, n: int | None, owner: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError(f"{owner}: texts must be a list of str, got {type(texts).__name__}.")
    if n is not None and len(texts) != n:
        raise InvalidInputError(f"{owner}: texts must hold one text per id ({n}), got {len(texts)}.")
    return list(texts)


def check_k(k: Any, owner: str) -> int:
    """``k`` as an int in ``[1, MAX_K]``."""
    k = check_int(k, owner, "k")
    if k > MAX_K:
        raise InvalidInputError(
            f"{owner}: k must be <= {MAX_K:,} (embedlab.index.MAX_K), got {k:,}. Ask for fewer hits per query.")
    return k


def check_results(nq: int, k: int, owner: str) -> None:
    """``nq * k`` (the size of the padded result) at most :data:`MAX_RESULTS`."""
    if nq * k > MAX_RESULTS:
        raise InvalidInputError(
            f"{owner}: queries x k must be <= {MAX_RESULTS:,} per call (embedlab.index.MAX_RESULTS), got {nq:,} x {k:,}. "
            f"Split the queries into batches of at most {max(1, MAX_RESULTS // k):,}.")


def check_ef(ef: Any, owner: str, kind: str) -> int | None:
    ef = check_int(ef, owner, "ef", allow_none=True)
    if ef is None:
        return None
    if kind == "flat":
        raise InvalidInputError(
            f"{owner}: ef must be None for a flat collection (it is exact), got {ef}. ef sets efSearch for hnsw "
            "and nprobe for ivf.")
    return int(ef)
