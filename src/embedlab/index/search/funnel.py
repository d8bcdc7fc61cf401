"""Funnel search over nested (Matryoshka) dimensions: a small index on a prefix, rescoring with the full vectors.

``Collection.create(path, dim=384, funnel=[64, 384], oversample=8)`` stores the full vectors once (the collection's
memory-mapped vectors file) and indexes only their first 64 coordinates (an HNSW graph by default; ``index="flat"``
scans the prefixes, ``index="ivf"`` clusters them). A search asks that index for the best ``k * oversample`` rows by
the prefix, then re-ranks those rows by the exact score of the full vectors read from the vectors file and returns
the top ``k`` (``oversample`` may be changed per search). Nothing is encoded twice: the prefix index is built from the
stored rows. A model trained with nested dimensions (:class:`~embedlab.train.losses.Matryoshka`, Kusupati et al.
2022; :class:`~embedlab.train.losses.Starbucks`, Zhuang et al. 2024) keeps its ranking in the prefix, which is what
makes a small ``oversample`` enough; any model works, at the recall the benchmark measures.

With ``metric="cosine"`` the prefixes are re-normalised (the first stage ranks by the cosine of the prefixes, the
quantity Matryoshka training optimises); with ``"ip"`` they are used as they are. ``"l2"`` is not supported.
Filters and deletes reach the first stage as the bitmap any index gets, so the rescored candidates are all allowed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedlab.compress import rescore as rescore_rows
from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.index.search.faiss_backends import VectorIndex, VectorSource
from embedlab.params import check_int
from embedlab.selector import BitmapSelector

FUNNEL_PARAMS = ("funnel", "oversample")  # index parameters that choose this index
DEFAULT_OVERSAMPLE = 8


def check_oversample(value, owner: str) -> int:
    return check_int(value, owner, "oversample", high=1024,
                     hint="The first stage returns k * oversample candidates for rescoring.")


def check_funnel_params(own: dict, inner: dict, owner: str, metric: str | None, dim: int | None) -> dict:
    """``{"funnel": [first, full], "oversample": n}`` validated against the collection's ``metric`` and ``dim``."""
    stages = own.get("funnel")
    width = dim or 384
    example = f"[{max(1, width // 6)}, {width}]"
    ok = (isinstance(stages, (list, tuple)) and len(stages) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in stages))
    if not ok:
        raise InvalidInputError(f"{owner}: funnel must be [first-stage dims, full dims], two ints, got {stages!r}. "
                                f"Pass e.g. funnel={example}.")
    first, full = int(stages[0]), int(stages[1])
    if dim is not None and full != dim:
        raise InvalidInputError(f"{owner}: funnel must end at the collection's dim {dim}, got {list(stages)}. "
                                f"Pass funnel=[{first}, {dim}].")
    if not 1 <= first < full:
        raise InvalidInputError(f"{owner}: funnel's first stage must be smaller than the full dimension, got "
                                f"{list(stages)}. Pass e.g. funnel={example}; without a smaller stage, drop funnel=.")
    if metric == "l2":
        raise UnsupportedError(f"{owner}: metric must be 'cosine' or 'ip' with funnel=, got 'l2'. Prefixes are "
                               "ranked by inner product; use metric='cosine'.")
    return {**inner, "funnel": [first, full], "oversample": check_oversample(own.get("oversample", DEFAULT_OVERSAMPLE),
                                                                             owner)}


class FunnelIndex:
    """A :class:`~embedlab.index.search.faiss_backends.VectorIndex` over the first ``funnel[0]`` coordinates,
    rescored with the full stored rows (module docstring). ``kind`` is the first stage's (the planner treats it as
    that index); ``default_ef`` likewise."""

    def __init__(self, kind: str, dim: int, metric: str, params: dict, source: VectorSource,
                 inner: VectorIndex) -> None:
        self.kind, self.dim, self.metric, self.params, self.source = kind, dim, metric, params, source
        self.first = int(params["funnel"][0])
        self.inner = inner
        self.default_ef = inner.default_ef

    @staticmethod
    def _inner_params(params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in FUNNEL_PARAMS}

    @classmethod
    def create(cls, inner_class, dim: int, metric: str, params: dict, source: VectorSource) -> "FunnelIndex":
        """A new funnel whose first stage is ``inner_class`` (an index class of :mod:`~embedlab.index.search.kinds`)."""
        first = int(params["funnel"][0])
        inner = inner_class.create(first, metric, cls._inner_params(params), source)
        return cls(inner_class.kind, dim, metric, params, source, inner)

    @classmethod
    def read(cls, inner_class, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> "FunnelIndex":
        first = int(params["funnel"][0])
        inner = inner_class.read(first, metric, cls._inner_params(params), path, source)
        return cls(inner_class.kind, dim, metric, params, source, inner)

    @property
    def index(self):
        """The first stage's faiss index (the planner reads an IVF's ``nlist`` from it)."""
        return self.inner.index

    @property
    def ntotal(self) -> int:
        return self.inner.ntotal

    def prefix(self, vectors: np.ndarray) -> np.ndarray:
        """float32 ``[n, funnel[0]]``: the first coordinates, re-normalised for cosine."""
        p = np.array(np.asarray(vectors, dtype=np.float32)[:, : self.first], dtype=np.float32, order="C")
        if self.metric == "cosine":
            p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return p

    def add(self, vectors: np.ndarray) -> None:
        self.inner.add(self.prefix(vectors))

    def search(self, queries: np.ndarray, k: int, *, allowed: BitmapSelector | None = None, ef: int | None = None,
               oversample: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n = self.ntotal
        candidates = min(max(n, 1), k * int(oversample or self.params["oversample"]))
        _, rows = self.inner.search(self.prefix(q), candidates, allowed=allowed, ef=ef)
        return rescore_rows(q, rows, np.asarray(self.source()), k)  # a plain view: no memmap subclass per read

    def ram_bytes_per_vector(self) -> float:
        """The first stage's bytes per row (prefix rows, links); the full rows are memory-mapped, as with codecs."""
        return self.inner.ram_bytes_per_vector()

    keeps_rows = False  # the first stage holds prefixes, not the stored rows: exact scoring gathers them from the vectors file

    @property
    def worth_writing(self) -> bool:
        return self.inner.worth_writing

    def write(self, path: Path) -> None:
        self.inner.write(path)
