"""The free-embedding capacity experiment of Weller et al. (2025), "On the Theoretical Limitations of
Embedding-Based Retrieval", section 4.

Every query and every document gets its own free vector of dimension ``d`` (a lookup table, no
encoder). The vectors are optimised directly on the test qrels with full-batch InfoNCE over all
documents (temperature 0.1, Adam with learning rate 0.01, re-normalised to unit length after every
update) until either every query's top-``k`` is exactly its relevant set (success) or the loss has
not improved by ``min_delta`` for ``patience`` steps (failure). If free vectors cannot realise a
qrel matrix in ``d`` dimensions, no trained encoder of that dimension can.

The loss follows the authors' released code: the mean over all (query, relevant document) pairs of
``-log softmax_j(<q_i, d_j> / tau)[relevant]``. Its gradient is written out by hand (no autograd):
with ``P = softmax(Z)`` and ``A`` the 0/1 relevance matrix, ``dL/dZ = (k_i P - A) / n_pos``, which
keeps one ``[m, n]`` buffer per seed and makes one step about three matrix passes.

:func:`critical_n` finds the largest ``n`` for which all ``C(n, k)`` top-``k`` sets are realisable
(galloping, then binary search; several seeds per probe, so one unlucky start does not decide).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from embedlab.errors import InvalidInputError
from embedlab.params import check_int
from embedlab.models import torch_threads
from embedlab.types import ProgressCallback, report_progress

DEFAULT_MEMORY_LIMIT = 2 * 2**30  # bytes for the [seeds, m, n] score buffers


@dataclass(frozen=True)
class FreeEmbeddingResult:
    """Outcome of one free-embedding optimisation (the best of its seeds).

    ``solved``: some seed reached exact top-k for every query. ``accuracy``: the fraction of
    queries whose top-k is exactly their relevant set, for the best seed. ``failing_queries``: int64
    positions (into the ``relevant`` list) of the queries the best seed still gets wrong.
    ``steps`` counts optimiser steps of the longest-running seed; ``seconds`` is wall time.
    """

    n_docs: int
    dim: int
    solved: bool
    accuracy: float
    loss: float
    steps: int
    seconds: float
    seed: int
    failing_queries: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CriticalN:
    """The critical n for one dimension: ``n`` is the largest number of documents solved; ``trials``
    lists every probe as ``(n, solved, steps, seconds)`` in the order they ran."""

    dim: int
    k: int
    n: int
    trials: tuple[tuple[int, bool, int, float], ...]
    seconds: float


def _check_threads(threads: int | None) -> int | None:
    return check_int(threads, "capacity", "threads", allow_none=True)


def _as_relevance(relevant, n_docs: int, owner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relevant sets -> (query index per pair, doc index per pair, k per query), validated."""
    if not isinstance(n_docs, (int, np.integer)) or n_docs < 2:
        raise InvalidInputError(f"{owner}: n_docs must be an int >= 2, got {n_docs!r}.")
    rows, cols, sizes = [], [], []
    for i, rel in enumerate(relevant):
        rel = sorted({int(r) for r in rel})
        if not rel:
            raise InvalidInputError(f"{owner}: every query must have at least one relevant document, query {i} has none.")
        if rel[0] < 0 or rel[-1] >= n_docs:
            raise InvalidInputError(
                f"{owner}: relevant document positions must be in [0, {n_docs}), got {rel[0] if rel[0] < 0 else rel[-1]} "
                f"in query {i}. Map document ids to positions 0..n_docs-1 first."
            )
        rows.extend([i] * len(rel))
        cols.extend(rel)
        sizes.append(len(rel))
    if not sizes:
        raise InvalidInputError(f"{owner}: relevant must hold at least one query, got none.")
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(sizes, np.int64)


def _check_memory(m: int, n: int, dim: int, seeds: int, limit: int, owner: str) -> None:
    need = 4 * seeds * (2 * m * n + 4 * (m + n) * dim)
    if need > limit:
        raise InvalidInputError(
            f"{owner}: the problem must fit in memory_limit={limit / 2**30:.2f} GiB, got {m} queries x {n} documents x "
            f"{seeds} seed(s) needing {need / 2**30:.2f} GiB (4 bytes x seeds x (2 m n + 4 (m + n) d)). "
            "Lower n, k or the number of seeds, or raise memory_limit."
        )


def optimize_free_embeddings(
    relevant: Sequence[Sequence[int]],
    n_docs: int,
    dim: int,
    *,
    seeds: Sequence[int] = (0, 1),
    temperature: float = 0.1,
    lr: float = 0.01,
    patience: int = 1000,
    min_delta: float = 1e-5,
    max_steps: int = 100_000,
    check_every: int = 50,
    threads: int | None = None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    progress: ProgressCallback | None = None,
) -> FreeEmbeddingResult:
    """Optimise free query and document vectors so each query's top-k is its relevant set.

    ``relevant``: one sequence of document positions (ints in ``[0, n_docs)``) per query; the
    ``m`` queries may have different numbers of relevant documents. All ``len(seeds)`` random
    starts run batched in one tensor program (``[seeds, m, dim]`` and ``[seeds, n_docs, dim]``
    float32); the call returns as soon as one seed solves the problem, or when every seed has
    stopped improving. ``progress(step, max_steps)`` is called every ``check_every`` steps.
    """
    owner = "optimize_free_embeddings"
    dim = check_int(dim, owner, "dim")
    if not seeds:
        raise InvalidInputError(f"{owner}: seeds must hold at least one int, got {seeds!r}.")
    for name, value in (("temperature", temperature), ("lr", lr)):
        if not value > 0:
            raise InvalidInputError(f"{owner}: {name} must be > 0, got {value!r}.")
    patience, max_steps, check_every = (check_int(v, owner, name) for name, v in
                                        (("patience", patience), ("max_steps", max_steps), ("check_every", check_every)))
    q_idx, d_idx, sizes = _as_relevance(relevant, n_docs, owner)
    m, n, s = len(sizes), int(n_docs), len(seeds)
    _check_memory(m, n, dim, s, memory_limit, owner)
    with torch_threads(_check_threads(threads)), torch.no_grad():
        return _optimize(q_idx, d_idx, sizes, n, int(dim), tuple(int(x) for x in seeds), temperature, lr, patience,
                         min_delta, max_steps, check_every, progress)


def _init(seed: int, rows: int, dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, dim, generator=g)
    return x / x.norm(dim=1, keepdim=True)


def _optimize(q_idx, d_idx, sizes, n, dim, seeds, tau, lr, patience, min_delta, max_steps, check_every, progress):
    start = time.perf_counter()
    m, s = len(sizes), len(seeds)
    flat = torch.from_numpy(q_idx * n + d_idx)  # positions of relevant pairs in a flattened [m, n]
    q_of_pair = torch.from_numpy(q_idx)
    k_q = torch.from_numpy(sizes).to(torch.float32)
    n_pos = float(len(flat))
    # Seed i draws its queries and documents from generators seeded (seed, 2 * seed + 1): independent starts.
    Q = torch.stack([_init(2 * sd, m, dim) for sd in seeds])
    D = torch.stack([_init(2 * sd + 1, n, dim) for sd in seeds])
    state = [torch.zeros_like(Q), torch.zeros_like(Q), torch.zeros_like(D), torch.zeros_like(D)]
    b1, b2, eps = 0.9, 0.999, 1e-8
    alive = torch.arange(s)
    best = torch.full((s,), math.inf)
    since = torch.zeros(s, dtype=torch.long)
    best_acc = torch.zeros(s)
    best_fail: list[np.ndarray | None] = [None] * s
    last_loss = torch.full((s,), math.inf)
    step = 0
    scale = 1.0 / (tau * n_pos)
    while step < max_steps and len(alive):
        step += 1
        # Unit vectors keep |Z| <= 1/tau, so exp cannot overflow and needs no max-shift.
        Z = torch.bmm(Q * (1.0 / tau), D.transpose(1, 2))  # [s, m, n]
        Zf = Z.view(len(alive), -1)
        z_pos = Zf[:, flat]  # [s, n_pos]
        if step % check_every == 0 or step == 1:
            acc, failing = _exact_topk(Z, z_pos, flat, q_of_pair, m)
            for j, a in enumerate(alive.tolist()):
                if acc[j] >= best_acc[a] or best_fail[a] is None:
                    best_acc[a], best_fail[a] = acc[j], failing[j]
            if bool((acc >= 1.0).any()):
                break
            report_progress(progress, step, max_steps)
        E = Z.exp_()
        denom = E.sum(-1)  # [s, m]
        loss = (torch.log(denom) * k_q).sum(1).sub_(z_pos.sum(1)).div_(n_pos)  # [s]
        last_loss[alive] = loss
        improved = loss < best[alive] - min_delta
        best[alive] = torch.where(improved, loss, best[alive])
        since[alive] = torch.where(improved, torch.zeros_like(since[alive]), since[alive] + 1)
        G = E.mul_((k_q / denom).unsqueeze(-1))  # k_i * softmax, one pass
        G.view(len(alive), -1)[:, flat] -= 1.0
        grads = (torch.bmm(G, D).mul_(scale), torch.bmm(G.transpose(1, 2), Q).mul_(scale))
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        for p, g, mom, var in ((Q, grads[0], state[0], state[1]), (D, grads[1], state[2], state[3])):
            mom.mul_(b1).add_(g, alpha=1 - b1)
            var.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(mom, var.div(bc2).sqrt_().add_(eps), value=-lr / bc1)
            p.div_(p.norm(dim=-1, keepdim=True))
        keep = since[alive] < patience
        if not bool(keep.all()):
            alive = alive[keep]
            Q, D = Q[keep], D[keep]
            state = [t[keep] for t in state]
    winner = int(torch.argmax(best_acc))
    solved = bool(best_acc[winner] >= 1.0)
    return FreeEmbeddingResult(
        n_docs=n, dim=dim, solved=solved, accuracy=float(best_acc[winner]), loss=float(last_loss[winner]),
        steps=step, seconds=time.perf_counter() - start, seed=seeds[winner],
        failing_queries=best_fail[winner] if best_fail[winner] is not None else np.arange(m),
    )


def _exact_topk(Z: torch.Tensor, z_pos: torch.Tensor, flat: torch.Tensor, q_of_pair: torch.Tensor, m: int):
    """Per seed: fraction of queries whose top-k is exactly their relevant set, and the failing ones.

    A query is right iff its lowest relevant score beats its highest non-relevant score.
    """
    s = Z.shape[0]
    worst_pos = torch.full((s, m), math.inf).scatter_reduce_(1, q_of_pair.expand(s, -1), z_pos, reduce="amin")
    masked = Z.clone()
    masked.view(s, -1)[:, flat] = -math.inf
    best_neg = masked.max(-1).values
    ok = worst_pos > best_neg  # a query with every document relevant has best_neg = -inf: right
    acc = ok.float().mean(1)
    failing = [torch.nonzero(~ok[j]).flatten().numpy().astype(np.int64) for j in range(s)]
    return acc, failing


def all_subsets(n: int, k: int) -> list[tuple[int, ...]]:
    """The ``C(n, k)`` relevant sets of the combinatorial experiment, in lexicographic order."""
    return list(itertools.combinations(range(n), k))


def solve_all_subsets(n: int, k: int, dim: int, **options) -> FreeEmbeddingResult:
    """:func:`optimize_free_embeddings` on all ``C(n, k)`` queries over ``n`` documents."""
    k = check_int(k, "solve_all_subsets", "k")
    if not isinstance(n, (int, np.integer)) or n <= k:
        raise InvalidInputError(f"solve_all_subsets: n must be an int > k={k}, got {n!r}. Use at least k + 1 documents.")
    m = math.comb(n, k)
    seeds = options.get("seeds", (0, 1))
    _check_memory(m, n, dim, len(seeds), options.get("memory_limit", DEFAULT_MEMORY_LIMIT), "solve_all_subsets")
    return optimize_free_embeddings(all_subsets(n, k), n, dim, **options)


def critical_n(
    dim: int,
    *,
    k: int = 2,
    start: int | None = None,
    n_max: int | None = None,
    on_trial: Callable[[FreeEmbeddingResult], None] | None = None,
    **options,
) -> CriticalN:
    """The largest ``n`` for which free ``dim``-dimensional embeddings realise all ``C(n, k)`` top-k sets.

    Galloping from ``start`` (default ``max(k + 1, round(2.5 dim))``) up by 1, 2, 4, ... while probes
    succeed, or down while they fail, then binary search between the last success and the first
    failure. A probe tries ``seeds`` one after another (retries) and succeeds as soon as one seed
    does, so a single unlucky start does not decide; ``on_trial`` sees every single-seed run. Assumes success is monotone in ``n`` (the paper's premise). ``n_max`` caps the
    search (default: the largest ``n`` within ``memory_limit``); a success at ``n_max`` returns it.
    """
    dim, k = check_int(dim, "critical_n", "dim"), check_int(k, "critical_n", "k")
    t0 = time.perf_counter()
    seeds = options.get("seeds", (0, 1))
    limit = options.get("memory_limit", DEFAULT_MEMORY_LIMIT)
    if n_max is None:
        n_max = k + 1
        while 4 * (2 * math.comb(n_max + 1, k) * (n_max + 1)) <= limit:
            n_max += 1
    lo_bound = k + 1
    if n_max < lo_bound:
        raise InvalidInputError(f"critical_n: n_max must be >= k + 1 = {lo_bound}, got {n_max}.")
    n0 = min(max(lo_bound, start if start is not None else round(2.5 * dim)), n_max)
    trials: list[tuple[int, bool, int, float]] = []
    cache: dict[int, bool] = {}

    def solved(n: int) -> bool:
        if n not in cache:
            steps, seconds = 0, 0.0
            for seed in seeds:  # retries: the next seed only runs when the previous one failed
                r = solve_all_subsets(n, k, dim, **{**options, "seeds": (seed,)})
                steps, seconds = steps + r.steps, seconds + r.seconds
                if on_trial is not None:
                    on_trial(r)
                if r.solved:
                    break
            cache[n] = r.solved
            trials.append((n, r.solved, steps, seconds))
        return cache[n]

    lo, hi = None, None  # largest success, smallest failure
    if solved(n0):
        lo, step = n0, 1
        while hi is None:
            probe = min(lo + step, n_max)
            if probe == lo:  # reached n_max
                break
            if solved(probe):
                lo, step = probe, step * 2
            else:
                hi = probe
    else:
        hi, step = n0, 1
        while lo is None and hi > lo_bound:
            probe = max(hi - step, lo_bound)
            if solved(probe):
                lo = probe
            else:
                hi, step = probe, step * 2
        if lo is None:  # even k + 1 documents failed
            return CriticalN(int(dim), int(k), k, tuple(trials), time.perf_counter() - t0)
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        if solved(mid):
            lo = mid
        else:
            hi = mid
    return CriticalN(int(dim), int(k), int(lo), tuple(trials), time.perf_counter() - t0)


def capacity_curve(
    dims: Sequence[int],
    *,
    k: int = 2,
    on_result: Callable[[CriticalN], None] | None = None,
    **options,
) -> dict[int, CriticalN]:
    """:func:`critical_n` for each dimension in increasing order; each search starts where the
    previous results point (a quadratic through the last three, else a line through the last two)."""
    dims = sorted({int(d) for d in dims})
    if not dims or dims[0] < 1:
        raise InvalidInputError(f"capacity_curve: dims must be positive ints, got {list(dims)!r}.")
    out: dict[int, CriticalN] = {}
    for d in dims:
        start = options.pop("start", None) if not out else None
        done = sorted(out)
        if len(done) >= 2:
            xs = done[-3:]
            fit = np.polyfit(xs, [out[x].n for x in xs], len(xs) - 1)
            start = max(out[done[-1]].n + 1, round(float(np.polyval(fit, d))))
        elif len(done) == 1:
            start = round(out[done[0]].n * d / done[0])
        out[d] = critical_n(d, k=k, start=start, **options)
        if on_result is not None:
            on_result(out[d])
    return out
