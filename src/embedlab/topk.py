"""The one top-k selection: every search path in embedlab ranks its candidates here.

Order is score descending, ties broken by the lower position, so two paths that see the same scores
return the same ranking (the exact search every approximate path is tested against included).
"""

from __future__ import annotations

from typing import Iterable

import faiss
import numpy as np

SORT_BELOW = 512  # rows of at most this many entries are sorted whole instead of partitioned first

def topk(scores: np.ndarray, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` entries of each row of ``scores``.

    ``scores`` float ``[nq, n]`` (higher is better); ``positions`` int ``[nq, n]`` names each entry
    (default: its column, ``0..n-1``). An entry whose position is negative or whose score is ``-inf`` or
    NaN is padding and never ranked. Returns ``(scores, positions)``: float32 ``[nq, k]`` and int64
    ``[nq, k]``, sorted by score descending, ties by lower position, padded with ``-inf`` / ``-1`` where a
    row has fewer than ``k`` valid entries.
    """
    scores = np.asarray(scores)
    nq, n = scores.shape
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_p = np.full((nq, k), -1, dtype=np.int64)
    kk = min(k, n)
    if kk == 0 or nq == 0:
        return out_s, out_p
    # -inf and NaN scores sort after every real score and are marked as padding at the end; a negative position
    # must not win on its score, so its entry is masked first (checked with one reduction, masked only then)
    if positions is not None and positions.min() < 0:
        invalid = positions < 0
        scores = np.where(invalid, -np.inf, scores)
        positions = np.where(invalid, np.iinfo(np.int64).max, positions)
    if kk < n and n > SORT_BELOW:
        # the best kk + 1 of each row: the first kk are the top kk (a tie across the cut is broken arbitrarily), and
        # a row whose (kk+1)-th score equals its kk-th has such a tie, so it is redone with a full sort
        if scores.dtype == np.float32:  # faiss's heap, in C++ (11k scores: 0.012 ms; argpartition: 0.11 ms)
            best_s, cols = faiss.kmax(scores, kk + 1)
            top_s, after = best_s[:, :kk], best_s[:, kk]
            redo = (cols[:, kk] < 0) | (top_s.min(1) == after)  # < kk + 1 real scores enter the heap: sorted too
            cols = cols[:, :kk]
        else:
            part = np.argpartition(-scores, kk, axis=1)
            cols = part[:, :kk]
            top_s = np.take_along_axis(scores, cols, 1)
            redo = top_s.min(1) == np.take_along_axis(scores, part[:, kk : kk + 1], 1)[:, 0]
        top_p = cols if positions is None else np.take_along_axis(positions, cols, 1)
        for row in np.flatnonzero(redo):
            pos = np.arange(n) if positions is None else positions[row]
            order = np.lexsort((pos, -scores[row]))[:kk]
            top_s[row], top_p[row] = scores[row, order], pos[order]
    else:  # few entries (a rescoring pass): one sort of everything costs less than partitioning
        top_s = scores
        top_p = np.broadcast_to(np.arange(n, dtype=np.int64), (nq, n)) if positions is None else positions
    order = np.lexsort((top_p, -top_s), axis=1)[:, :kk]
    out_s[:, :kk] = np.take_along_axis(top_s, order, 1)
    out_p[:, :kk] = np.take_along_axis(top_p, order, 1)
    padding = ~(out_s > -np.inf)
    out_p[padding] = -1
    out_s[padding] = -np.inf
    return out_s, out_p


def topk_blocks(blocks: Iterable[tuple[np.ndarray, "np.ndarray | int"]], nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk` over the columns of many blocks of scores, seen one block at a time (memory-bounded scans).

    Each block is ``(scores [nq, b], where)``: ``where`` is an int offset (the block's columns are positions
    ``offset .. offset + b - 1``) or int ``[nq, b]`` positions. Each block's best ``k`` are kept and merged every
    few blocks, so the result equals :func:`topk` of all columns side by side: ``(scores float32 [nq, k],
    positions int64 [nq, k])``, padded with ``-inf`` / ``-1``.
    """
    kept_s = [np.full((nq, k), -np.inf, dtype=np.float32)]
    kept_p = [np.full((nq, k), -1, dtype=np.int64)]
    for scores, where in blocks:
        if isinstance(where, (int, np.integer)):
            s, p = topk(scores, k)
            p = np.where(p >= 0, p + where, -1)
        else:
            s, p = topk(scores, k, where)
        kept_s.append(s)
        kept_p.append(p)
        if len(kept_s) > 4:
            s, p = topk(np.concatenate(kept_s, 1), k, np.concatenate(kept_p, 1))
            kept_s, kept_p = [s], [p]
    return topk(np.concatenate(kept_s, 1), k, np.concatenate(kept_p, 1))
