"""ANN kernels behind one small protocol: :class:`VectorIndex`, implemented on faiss-cpu (flat, HNSW, IVF).

A collection stores rows ``0..n-1`` (its own positions, never the caller's ids) and hands every row to
its index in order; an index answers ``search(queries, k, allowed=, ef=)`` with scores (higher is better)
and row positions, honouring an optional :class:`~embedlab.selector.BitmapSelector` of allowed rows.
Each index class validates its own parameters (``check_params``), builds a new index (``create``) and reads a
checkpoint (``read``); :mod:`embedlab.index.search.kinds` maps the manifest's ``index`` name to the class.
:func:`hnsw_index` is the one construction of a faiss HNSW graph (also used by the standalone MUVERA index).

References: HNSW — Malkov & Yashunin (2018), "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs", Alg. 2 (``efSearch`` is their ``ef``); IVF — Jégou,
Douze & Schmid (2011), "Product quantization for nearest neighbor search", Sec. III-A (coarse quantiser,
``nprobe`` lists visited).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Protocol

import faiss
import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.params import check_int
from embedlab.selector import BitmapSelector


class VectorIndex(Protocol):
    """What a collection needs from an index. Vectors arrive prepared (unit rows for cosine)."""

    kind: str
    default_ef: int  # efSearch (HNSW) or nprobe (IVF); 0 when the index has no such knob

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None:
        """Append float32 ``[n, d]`` rows; they get positions ``ntotal .. ntotal + n - 1``."""

    def search(self, queries: np.ndarray, k: int, *, allowed: BitmapSelector | None,
               ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32 [nq, k], rows int64 [nq, k])``, best first, padded with ``-inf`` / ``-1``."""

    @property
    def worth_writing(self) -> bool:
        """``False`` when there is nothing worth a checkpoint (the index is rebuilt from the vectors on open)."""

    def write(self, path: Path) -> None:
        """Serialise to the file ``path`` (the caller writes it aside and renames it into place)."""

    def ram_bytes_per_vector(self) -> float:
        """Bytes per row the index itself holds in RAM (vectors or codes, links, list ids, amortised centroids)."""

    @property
    def keeps_rows(self) -> bool:
        """Whether the index holds every stored row as float32, so :meth:`score_rows` can read them in place."""

    def score_rows(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact scores float32 ``[nq, m]`` of prepared queries against stored ``rows`` (int64 ``[m]``), read in
        place (only when :attr:`keeps_rows`)."""


VectorSource = Callable[[], np.ndarray]
"""Returns the collection's stored vectors, float32 ``[n, d]`` (a read-only memory map, prepared rows), for an
index that rescores candidates with full-precision vectors (e.g. a compressed index); ``n`` grows with adds."""


SPLIT_ROWS = 4096  # in-place scoring splits one query's rows across threads from 2 * SPLIT_ROWS rows up


def score_parts(nq: int, m: int) -> int:
    """How many label lists :meth:`VectorIndex.score_rows` hands faiss per query: enough to give each of faiss's
    OpenMP threads work when the call has fewer queries than threads, each list at least :data:`SPLIT_ROWS`."""
    return max(1, min(faiss.omp_get_max_threads() // max(nq, 1), m // SPLIT_ROWS))


def faiss_metric(metric: str) -> int:
    """cosine and ip are inner products on prepared vectors; l2 is squared Euclidean."""
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def to_scores(distances: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """faiss output to public form: higher is better, missing labels as ``-1`` with ``-inf``."""
    scores = -distances if metric == "l2" else distances.copy()
    scores = scores.astype(np.float32, copy=False)
    scores[labels < 0] = -np.inf
    return scores, labels.astype(np.int64, copy=False)


def hnsw_index(dim: int, metric: str, *, M: int, ef_construction: int, ef_search: int,
               sq_type: int | None = None) -> faiss.IndexHNSW:
    """A new, empty faiss HNSW graph over ``dim``-wide rows: ``M`` links per node (``2 * M`` on layer 0),
    ``efConstruction`` and a default ``efSearch`` (Malkov & Yashunin 2018); rows stored as float32
    (``IndexHNSWFlat``) or as the codes of a faiss scalar quantiser ``sq_type`` (``IndexHNSWSQ``)."""
    mt = faiss_metric(metric)
    index = faiss.IndexHNSWFlat(dim, M, mt) if sq_type is None else faiss.IndexHNSWSQ(dim, sq_type, M, mt)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    return index


def _param(params: dict, name: str, default: int | None, owner: str, low: int = 1) -> int | None:
    return check_int(params.pop(name, default), owner, name, low=low, allow_none=default is None)


def _no_extra(params: dict, kind: str, owner: str, known: list[str]) -> None:
    if params:
        raise InvalidInputError(
            f"{owner}: index parameters for {kind!r} must be among {known or 'none'}, got {sorted(params)}. "
            "Remove the unknown ones.")


def _read(path: Path, kind: str):
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataFormatError(f"Collection.open: {path.name} must be a readable faiss {kind} index, got: {exc}") from None


class _FaissIndex:
    """Shared faiss plumbing: search with optional selector and search-time parameters."""

    kind = "flat"
    default_ef = 0

    def __init__(self, index: Any, metric: str) -> None:
        self.index = index
        self.metric = metric

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def _params(self, allowed: BitmapSelector | None, ef: int | None, k: int):
        return allowed.params() if allowed is not None else None

    def ram_bytes_per_vector(self) -> float:
        return 4.0 * self.index.d  # IndexFlat: one float32 row each

    def _flat_rows(self):
        """The ``faiss.IndexFlat`` holding every row as float32, or ``None``."""
        return self.index if isinstance(self.index, faiss.IndexFlat) else None

    @property
    def keeps_rows(self) -> bool:
        return self._flat_rows() is not None

    def score_rows(self, queries, rows):
        flat = self._flat_rows()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        nq, m = len(queries), len(rows)
        parts = score_parts(nq, m)
        width = -(-m // parts) if m else 0
        # faiss scores each query against its own label list, in parallel over the lists (OpenMP), without
        # copying the rows out; a call with fewer queries than threads hands each query's rows over as `parts`
        # lists (one query, 11k of 117k rows, 384-d, 2 cores: 0.54 ms, 0.82 ms as one list, 3.0 ms to gather
        # them and call faiss.knn)
        padded = np.concatenate([rows, np.full(parts * width - m, rows[-1] if m else 0, dtype=np.int64)])
        labels = np.ascontiguousarray(np.broadcast_to(padded.reshape(parts, width), (nq, parts, width)))
        x = np.ascontiguousarray(np.repeat(queries, parts, axis=0)) if parts > 1 else queries
        out = np.empty((nq * parts, width), dtype=np.float32)
        if out.size:
            flat.compute_distance_subset(nq * parts, faiss.swig_ptr(x), width, faiss.swig_ptr(out),
                                         faiss.swig_ptr(labels))
        out = out.reshape(nq, parts * width)[:, :m]
        return -out if self.metric == "l2" else out

    def search(self, queries, k, *, allowed=None, ef=None):
        params = self._params(allowed, ef, k)
        d, i = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return to_scores(d, i, self.metric)

    worth_writing = True

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))


class FlatIndex(_FaissIndex):
    """Exact inner-product / L2 scan (``faiss.IndexFlat``); rebuilt from the stored vectors on open."""

    kind = "flat"

    def __init__(self, dim: int, metric: str) -> None:
        super().__init__(faiss.IndexFlat(dim, faiss_metric(metric)), metric)

    @staticmethod
    def check_params(params: dict, owner: str) -> dict:
        _no_extra(params, "flat", owner, [])
        return {}

    @classmethod
    def create(cls, dim: int, metric: str, params: dict, source: VectorSource) -> "FlatIndex":
        return cls(dim, metric)

    @classmethod
    def read(cls, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> "FlatIndex":
        return cls(dim, metric)  # never written: a flat scan is rebuilt from the vectors file

    worth_writing = False


class HNSWIndex(_FaissIndex):
    """A faiss HNSW graph (:func:`hnsw_index`) with ``M`` links per node, ``ef_construction`` and a default
    ``ef_search`` (raised to ``k`` when smaller)."""

    kind = "hnsw"

    def __init__(self, index, metric: str, ef_search: int) -> None:
        super().__init__(index, metric)
        self.default_ef = ef_search

    @staticmethod
    def check_params(params: dict, owner: str) -> dict:
        out = {"M": _param(params, "M", 16, owner, 2),
               "ef_construction": _param(params, "ef_construction", 128, owner),
               "ef_search": _param(params, "ef_search", 64, owner)}
        _no_extra(params, "hnsw", owner, list(out))
        return out

    @classmethod
    def create(cls, dim: int, metric: str, params: dict, source: VectorSource) -> "HNSWIndex":
        index = hnsw_index(dim, metric, M=params["M"], ef_construction=params["ef_construction"],
                           ef_search=params["ef_search"])
        return cls(index, metric, params["ef_search"])

    @classmethod
    def read(cls, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> "HNSWIndex":
        return cls(_read(path, "hnsw"), metric, params["ef_search"])

    def _params(self, allowed, ef, k):
        return faiss.SearchParametersHNSW(efSearch=max(int(ef or self.default_ef), k),
                                          sel=allowed.selector if allowed is not None else None)

    def _flat_rows(self):
        if "_storage" not in self.__dict__:  # the graph's storage never changes: looked up once
            storage = faiss.downcast_index(self.index.storage)
            self._storage = storage if isinstance(storage, faiss.IndexFlat) else None
        return self._storage

    def ram_bytes_per_vector(self) -> float:
        hnsw, n = self.index.hnsw, max(self.ntotal, 1)  # float32 rows + int32 links, levels + int64 offsets
        return 4.0 * self.index.d + (4 * hnsw.neighbors.size() + 4 * hnsw.levels.size() + 8 * hnsw.offsets.size()) / n


IVF_SEED = 1234  # the default k-means seed of an IVF index (``seed=`` in its index parameters)


class IVFIndex(_FaissIndex):
    """``faiss.IndexIVFFlat`` over ``nlist`` k-means lists, searched with ``nprobe`` of them.

    Training happens once, at a documented point: the index is an exact flat scan until an ``add`` brings it to
    at least ``train_size`` rows; that add trains k-means (``seed``) on every row stored at that moment, with
    ``nlist`` lists (default ``4 * sqrt(n)``, at most ``n / 39``), and moves the rows into the lists. Later adds
    only assign rows to lists; the lists are never retrained (``Collection.compact`` builds a new index).
    """

    kind = "ivf"

    def __init__(self, dim: int, metric: str, params: dict, index=None) -> None:
        super().__init__(index if index is not None else faiss.IndexFlat(dim, faiss_metric(metric)), metric)
        self.dim, self.params = dim, params
        self.default_ef = params["nprobe"]

    @staticmethod
    def check_params(params: dict, owner: str) -> dict:
        nlist = _param(params, "nlist", None, owner)
        out = {"nlist": nlist, "nprobe": _param(params, "nprobe", 16, owner),
               "train_size": _param(params, "train_size", max(1000, 39 * (nlist or 0)), owner),
               "seed": _param(params, "seed", IVF_SEED, owner, 0)}
        if nlist is not None and out["train_size"] < nlist:
            raise InvalidInputError(f"{owner}: train_size must be >= nlist ({nlist}), got {out['train_size']}.")
        _no_extra(params, "ivf", owner, list(out))
        return out

    @classmethod
    def create(cls, dim: int, metric: str, params: dict, source: VectorSource) -> "IVFIndex":
        return cls(dim, metric, params)

    @classmethod
    def read(cls, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> "IVFIndex":
        return cls(dim, metric, params, _read(path, "ivf"))

    @property
    def trained(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def add(self, vectors: np.ndarray) -> None:
        super().add(vectors)
        if not self.trained and self.ntotal >= self.params["train_size"]:
            self._train(self.index.reconstruct_n(0, self.ntotal))

    def _train(self, data: np.ndarray) -> None:
        nlist = self.params["nlist"] or max(1, min(int(4 * math.sqrt(len(data))), len(data) // 39))
        quantizer = faiss.IndexFlat(self.dim, faiss_metric(self.metric))
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss_metric(self.metric))
        ivf.cp.seed = self.params.get("seed", IVF_SEED)  # manifests written before seed= existed: the old default
        ivf.train(data)
        ivf.add(data)
        self.index = ivf

    def _params(self, allowed, ef, k):
        if not self.trained:
            return super()._params(allowed, ef, k)
        nprobe = min(int(ef or self.default_ef), self.index.nlist)
        return faiss.SearchParametersIVF(nprobe=nprobe, sel=allowed.selector if allowed is not None else None)

    @property
    def worth_writing(self) -> bool:
        return self.trained

    def ram_bytes_per_vector(self) -> float:
        if not self.trained:
            return super().ram_bytes_per_vector()
        n = max(self.ntotal, 1)  # float32 row + int64 list id each, plus the centroids spread over the rows
        return 4.0 * self.dim + 8 + 4.0 * self.dim * self.index.nlist / n
