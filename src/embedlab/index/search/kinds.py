"""Which :class:`~embedlab.index.search.faiss_backends.VectorIndex` a collection's manifest names.

``INDEXES`` maps ``Collection.create(index=...)`` to its class; index parameters that name a codec
(:data:`~embedlab.index.search.compressed.CODEC_PARAMS`: ``codec``, ``rescore``, ``oversample``,
``codec_train_size``) choose the :class:`~embedlab.index.search.compressed.CompressedIndex` instead, an exhaustive
scan over in-RAM codes that only ``index="flat"`` allows; ``funnel=[first, dim]`` (with ``oversample``) chooses the
:class:`~embedlab.index.search.funnel.FunnelIndex`: an index of kind ``index`` over the first ``first`` coordinates,
rescored with the full rows. Every class has ``check_params(params, owner)``
(validate, fill defaults, raise for an unknown name), ``create(dim, metric, params, source)`` and
``read(dim, metric, params, path, source)``.
"""

from __future__ import annotations

from pathlib import Path

from embedlab.index.search.compressed import CODEC_PARAMS, CompressedIndex
from embedlab.errors import UnsupportedError
from embedlab.index.search.faiss_backends import FlatIndex, HNSWIndex, IVFIndex, VectorIndex, VectorSource
from embedlab.index.search.funnel import FUNNEL_PARAMS, FunnelIndex, check_funnel_params
from embedlab.params import check_choice

INDEXES = {"flat": FlatIndex, "hnsw": HNSWIndex, "ivf": IVFIndex}


def index_kinds() -> list[str]:
    return sorted(INDEXES)


def _funnel(params: dict) -> bool:
    return "funnel" in params


def check_params(kind: str, params: dict, owner: str, metric: str | None = None, dim: int | None = None) -> dict:
    """Validated index parameters with defaults filled (what the manifest stores); ``metric`` and ``dim``, when
    given, are checked against what the index can serve."""
    check_choice(kind, index_kinds(), owner, "index")
    if _funnel(params):
        codec = [name for name in CODEC_PARAMS if name in params and name != "oversample"]
        if codec:
            raise UnsupportedError(f"{owner}: funnel= searches a float prefix and cannot take codec parameters, got "
                                   f"{codec}. Drop them, or drop funnel= for a compressed collection.")
        own = {name: params[name] for name in FUNNEL_PARAMS if name in params}
        inner = INDEXES[kind].check_params({k: v for k, v in params.items() if k not in FUNNEL_PARAMS}, owner)
        return check_funnel_params(own, inner, owner, metric, dim)
    codec = {name: params[name] for name in CODEC_PARAMS if name in params}
    out = INDEXES[kind].check_params({k: v for k, v in params.items() if k not in CODEC_PARAMS}, owner)
    if codec:
        out.update(CompressedIndex.check_params(codec, kind, owner, metric, dim))
    return out


def make_index(kind: str, dim: int, metric: str, params: dict, source: VectorSource) -> VectorIndex:
    """A new, empty index of ``kind`` with checked ``params``."""
    if _funnel(params):
        return FunnelIndex.create(INDEXES[kind], dim, metric, params, source)
    if any(name in params for name in CODEC_PARAMS):
        return CompressedIndex.create(dim, metric, params, source)
    return INDEXES[kind].create(dim, metric, params, source)


def load_index(kind: str, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> VectorIndex:
    """The index checkpoint ``path`` written by its ``write`` (raises ``DataFormatError`` when unreadable)."""
    if _funnel(params):
        return FunnelIndex.read(INDEXES[kind], dim, metric, params, path, source)
    if any(name in params for name in CODEC_PARAMS):
        return CompressedIndex.read(dim, metric, params, path, source)
    return INDEXES[kind].read(dim, metric, params, path, source)
