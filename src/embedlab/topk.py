"""The one top-k selection: every search path in embedlab ranks its candidates here.

Order is score descending, ties broken by the lower position, so two paths that see the same scores
return the same ranking (the exact search every approximate path is tested against included).
"""

from __future__ import annotations

import numpy as np


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
    if positions is None:
        positions = np.broadcast_to(np.arange(n, dtype=np.int64), (nq, n))
    invalid = (positions < 0) | ~(scores > -np.inf)  # -inf and NaN
    if invalid.any():
        scores = np.where(invalid, -np.inf, scores)
        positions = np.where(invalid, np.iinfo(np.int64).max, positions)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_p = np.full((nq, k), -1, dtype=np.int64)
    kk = min(k, n)
    if kk == 0 or nq == 0:
        return out_s, out_p
    if kk < n:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_s, top_p = np.take_along_axis(scores, part, 1), np.take_along_axis(positions, part, 1)
        # argpartition cuts ties at the k-th score arbitrarily: redo those rows with a full sort
        kth = top_s.min(1)
        tied = np.flatnonzero((scores >= kth[:, None]).sum(1) > kk)
        for row in tied:
            order = np.lexsort((positions[row], -scores[row]))[:kk]
            top_s[row], top_p[row] = scores[row, order], positions[row, order]
    else:
        top_s, top_p = scores, positions
    order = np.lexsort((top_p, -top_s), axis=1)
    out_s[:, :kk] = np.take_along_axis(top_s, order, 1)
    out_p[:, :kk] = np.take_along_axis(top_p, order, 1)
    padding = ~(out_s > -np.inf)
    out_p[padding] = -1
    out_s[padding] = -np.inf
    return out_s, out_p
