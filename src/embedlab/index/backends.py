"""ANN kernels behind one small protocol: :class:`VectorIndex`, implemented on faiss-cpu (flat, HNSW, IVF).

A collection stores rows ``0..n-1`` (its own positions, never the caller's ids) and hands every row to
its index in order; an index answers ``search(queries, k, allowed=, ef=)`` with scores (higher is better)
and row positions, honouring an optional :class:`Selection` of allowed rows. New index kinds (for example
compressed codes with rescoring) register a factory with :func:`register_index`.

References: HNSW — Malkov & Yashunin (2018), "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs", Alg. 2 (``efSearch`` is their ``ef``); IVF — Jégou,
Douze & Schmid (2011), "Product quantization for nearest neighbor search", Sec. III-A (coarse quantiser,
``nprobe`` lists visited).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import faiss
import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError


class Selection:
    """An allowed-rows bitmap as faiss wants it. Keeps the packed array alive while faiss holds a pointer
    to it (``IDSelectorBitmap`` stores a raw pointer; freeing the array would silently leak other rows)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = np.ascontiguousarray(mask, dtype=bool)
        self.count = int(self.mask.sum())
        self._bits = np.packbits(self.mask, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(self._bits))

    @property
    def rows(self) -> np.ndarray:
        return np.flatnonzero(self.mask)


class VectorIndex(Protocol):
    """What a collection needs from an index. Vectors arrive prepared (unit rows for cosine)."""

    kind: str
    default_ef: int  # efSearch (HNSW) or nprobe (IVF); 0 when the index has no such knob

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None:
        """Append float32 ``[n, d]`` rows; they get positions ``ntotal .. ntotal + n - 1``."""

    def search(self, queries: np.ndarray, k: int, *, allowed: Selection | None, ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32 [nq, k], rows int64 [nq, k])``, best first, padded with ``-inf`` / ``-1``."""

    def write(self, path: Path) -> bool:
        """Serialise to ``path``; return ``False`` when there is nothing worth storing (rebuilt from vectors)."""

    def ram_bytes_per_vector(self) -> float:
        """Bytes per row the index itself holds in RAM (vectors or codes, links, list ids, amortised centroids)."""


VectorSource = Callable[[], np.ndarray]
"""Returns the collection's stored vectors, float32 ``[n, d]`` (a read-only memory map, prepared rows), for an
index that rescores candidates with full-precision vectors (e.g. a compressed index); ``n`` grows with adds."""

IndexFactory = Callable[[int, str, dict, VectorSource], VectorIndex]
IndexLoader = Callable[[int, str, dict, Path, VectorSource], VectorIndex]
_REGISTRY: dict[str, tuple[IndexFactory, IndexLoader, Callable[[dict, str], dict]]] = {}


def register_index(kind: str, factory: IndexFactory, loader: IndexLoader, check_params: Callable[[dict, str], dict]) -> None:
    """Make ``Collection.create(index=kind, **params)`` available. ``check_params(params, owner)`` validates and
    fills defaults (it must raise for an unknown parameter); the result is stored in the manifest."""
    _REGISTRY[kind] = (factory, loader, check_params)


@dataclass(frozen=True)
class IndexWrapper:
    """Index parameters owned by a wrapper around any registered kind (e.g. ``codec``/``rescore``/``oversample``).

    ``check(own_params, kind, owner) -> dict`` validates the wrapper's own parameters (filled defaults);
    ``wrap(kind, dim, metric, inner_params, own_params, source, path)`` returns the :class:`VectorIndex`
    (``path`` is ``None`` for a new index, else the checkpoint file written by its ``write``).
    """

    keys: tuple[str, ...]
    check: Callable[[dict, str, str], dict]
    wrap: Callable[[str, int, str, dict, dict, VectorSource, "Path | None"], VectorIndex]
    # (checked own params, metric, dim, owner): raise if the wrapper cannot serve this metric / vector width
    check_target: Callable[[dict, str, int, str], None] | None = None


_WRAPPERS: list[IndexWrapper] = []
PLUGIN_MODULES = ("embedlab.index.compressed",)  # imported on first use, when present; they call register_*


def register_wrapper(wrapper: IndexWrapper) -> None:
    _WRAPPERS.append(wrapper)


def _plugins() -> None:
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def index_kinds() -> list[str]:
    _plugins()
    return sorted(_REGISTRY)


def _split(params: dict) -> tuple[dict, IndexWrapper | None, dict]:
    for w in _WRAPPERS:
        own = {k: params[k] for k in w.keys if k in params}
        if own:
            return {k: v for k, v in params.items() if k not in w.keys}, w, own
    return params, None, {}


def check_params(kind: str, params: dict, owner: str, metric: str | None = None, dim: int | None = None) -> dict:
    if kind not in index_kinds():
        raise InvalidInputError(f"{owner}: index must be one of {index_kinds()}, got {kind!r}.")
    inner, wrapper, own = _split(dict(params))
    out = _REGISTRY[kind][2](inner, owner)
    if wrapper is not None:
        checked = wrapper.check(own, kind, owner)
        if metric is not None and dim is not None and wrapper.check_target is not None:
            wrapper.check_target(checked, metric, dim, owner)
        out.update(checked)
    return out


def make_index(kind: str, dim: int, metric: str, params: dict, source: VectorSource) -> VectorIndex:
    _plugins()
    inner, wrapper, own = _split(params)
    if wrapper is not None:
        return wrapper.wrap(kind, dim, metric, inner, own, source, None)
    return _REGISTRY[kind][0](dim, metric, inner, source)


def load_index(kind: str, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> VectorIndex:
    _plugins()
    inner, wrapper, own = _split(params)
    if wrapper is not None:
        return wrapper.wrap(kind, dim, metric, inner, own, source, path)
    return _REGISTRY[kind][1](dim, metric, inner, path, source)


def faiss_metric(metric: str) -> int:
    """cosine and ip are inner products on prepared vectors; l2 is squared Euclidean."""
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def to_scores(distances: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """faiss output to public form: higher is better, missing labels as ``-1`` with ``-inf``."""
    scores = -distances if metric == "l2" else distances.copy()
    scores = scores.astype(np.float32, copy=False)
    scores[labels < 0] = -np.inf
    return scores, labels.astype(np.int64, copy=False)


def _check_int(params: dict, name: str, default: int | None, owner: str, low: int = 1) -> int | None:
    value = params.pop(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{owner}: {name} must be an int >= {low}, got {value!r}.")
    return int(value)


def _no_extra(params: dict, kind: str, owner: str, known: list[str]) -> None:
    if params:
        raise InvalidInputError(
            f"{owner}: index parameters for {kind!r} must be among {known or 'none'}, got {sorted(params)}. "
            "Remove the unknown ones.")


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

    def _params(self, allowed: Selection | None, ef: int | None, k: int):
        return faiss.SearchParameters(sel=allowed.selector) if allowed is not None else None

    def ram_bytes_per_vector(self) -> float:
        return 4.0 * self.index.d  # IndexFlat: one float32 row each

    def search(self, queries, k, *, allowed=None, ef=None):
        params = self._params(allowed, ef, k)
        d, i = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return to_scores(d, i, self.metric)

    def write(self, path: Path) -> bool:
        faiss.write_index(self.index, str(path))
        return True


class FlatIndex(_FaissIndex):
    """Exact inner-product / L2 scan (``faiss.IndexFlat``); rebuilt from the stored vectors on open."""

    kind = "flat"

    def __init__(self, dim: int, metric: str) -> None:
        super().__init__(faiss.IndexFlat(dim, faiss_metric(metric)), metric)

    def write(self, path: Path) -> bool:
        return False


class HNSWIndex(_FaissIndex):
    """``faiss.IndexHNSWFlat`` with ``M`` links per node, ``ef_construction`` and a default ``ef_search``."""

    kind = "hnsw"

    def __init__(self, index, metric: str, ef_search: int) -> None:
        super().__init__(index, metric)
        self.default_ef = ef_search

    def _params(self, allowed, ef, k):
        return faiss.SearchParametersHNSW(efSearch=max(int(ef or self.default_ef), k),
                                          sel=allowed.selector if allowed is not None else None)

    def ram_bytes_per_vector(self) -> float:
        hnsw, n = self.index.hnsw, max(self.ntotal, 1)  # float32 rows + int32 links, levels + int64 offsets
        return 4.0 * self.index.d + (4 * hnsw.neighbors.size() + 4 * hnsw.levels.size() + 8 * hnsw.offsets.size()) / n


class IVFIndex(_FaissIndex):
    """``faiss.IndexIVFFlat``: an exact flat scan until ``train_size`` rows exist, then k-means with ``nlist``
    lists (default ``4 * sqrt(n)``, at most ``n / 39``) trained on every stored row and searched with ``nprobe``."""

    kind = "ivf"

    def __init__(self, dim: int, metric: str, params: dict, index=None) -> None:
        super().__init__(index if index is not None else faiss.IndexFlat(dim, faiss_metric(metric)), metric)
        self.dim, self.params = dim, params
        self.default_ef = params["nprobe"]

    @property
    def trained(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def add(self, vectors: np.ndarray) -> None:
        super().add(vectors)
        if not self.trained and self.ntotal >= self.params["train_size"]:
            data = self.index.reconstruct_n(0, self.ntotal)
            nlist = self.params["nlist"] or max(1, min(int(4 * math.sqrt(len(data))), len(data) // 39))
            quantizer = faiss.IndexFlat(self.dim, faiss_metric(self.metric))
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss_metric(self.metric))
            ivf.cp.seed = 1234
            ivf.train(data)
            ivf.add(data)
            self.index = ivf

    def _params(self, allowed, ef, k):
        if not self.trained:
            return super()._params(allowed, ef, k)
        nprobe = min(int(ef or self.default_ef), self.index.nlist)
        return faiss.SearchParametersIVF(nprobe=nprobe, sel=allowed.selector if allowed is not None else None)

    def write(self, path: Path) -> bool:
        return self.trained and super().write(path)

    def ram_bytes_per_vector(self) -> float:
        if not self.trained:
            return super().ram_bytes_per_vector()
        n = max(self.ntotal, 1)  # float32 row + int64 list id each, plus the centroids spread over the rows
        return 4.0 * self.dim + 8 + 4.0 * self.dim * self.index.nlist / n


def _flat_params(params: dict, owner: str) -> dict:
    _no_extra(params, "flat", owner, [])
    return {}


def _hnsw_params(params: dict, owner: str) -> dict:
    out = {"M": _check_int(params, "M", 16, owner, 2),
           "ef_construction": _check_int(params, "ef_construction", 128, owner),
           "ef_search": _check_int(params, "ef_search", 64, owner)}
    _no_extra(params, "hnsw", owner, list(out))
    return out


def _ivf_params(params: dict, owner: str) -> dict:
    nlist = _check_int(params, "nlist", None, owner)
    out = {"nlist": nlist, "nprobe": _check_int(params, "nprobe", 16, owner),
           "train_size": _check_int(params, "train_size", max(1000, 39 * (nlist or 0)), owner)}
    if nlist is not None and out["train_size"] < nlist:
        raise InvalidInputError(f"{owner}: train_size must be >= nlist ({nlist}), got {out['train_size']}.")
    _no_extra(params, "ivf", owner, list(out))
    return out


def _new_hnsw(dim: int, metric: str, params: dict) -> HNSWIndex:
    index = faiss.IndexHNSWFlat(dim, params["M"], faiss_metric(metric))
    index.hnsw.efConstruction = params["ef_construction"]
    index.hnsw.efSearch = params["ef_search"]
    return HNSWIndex(index, metric, params["ef_search"])


def _read(path: Path, kind: str):
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataFormatError(f"Collection.open: {path.name} must be a readable faiss {kind} index, got: {exc}") from None


register_index("flat", lambda d, m, p, src: FlatIndex(d, m), lambda d, m, p, path, src: FlatIndex(d, m), _flat_params)
register_index("hnsw", lambda d, m, p, src: _new_hnsw(d, m, p),
               lambda d, m, p, path, src: HNSWIndex(_read(path, "hnsw"), m, p["ef_search"]), _hnsw_params)
register_index("ivf", lambda d, m, p, src: IVFIndex(d, m, p),
               lambda d, m, p, path, src: IVFIndex(d, m, p, _read(path, "ivf")), _ivf_params)
