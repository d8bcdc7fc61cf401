"""Which :class:`~embedlab.index.search.faiss_backends.VectorIndex` a collection's manifest names.

``INDEXES`` maps ``Collection.create(index=...)`` to its class; index parameters that name a codec
(:data:`~embedlab.index.search.compressed.CODEC_PARAMS`: ``codec``, ``rescore``, ``oversample``,
``codec_train_size``) choose the :class:`~embedlab.index.search.compressed.CompressedIndex` instead, an exhaustive
scan over in-RAM codes that only ``index="flat"`` allows. Every class has ``check_params(params, owner)``
(validate, fill defaults, raise for an unknown name), ``create(dim, metric, params, source)`` and
``read(dim, metric, params, path, source)``.
"""

from __future__ import annotations

from pathlib import Path

from embedlab.index.search.compressed import CODEC_PARAMS, CompressedIndex
from embedlab.index.search.faiss_backends import FlatIndex, HNSWIndex, IVFIndex, VectorIndex, VectorSource
from embedlab.params import check_choice

INDEXES = {"flat": FlatIndex, "hnsw": HNSWIndex, "ivf": IVFIndex}


def index_kinds() -> list[str]:
    return sorted(INDEXES)


def _index_class(kind: str, params: dict):
    return CompressedIndex if any(name in params for name in CODEC_PARAMS) else INDEXES[kind]


def check_params(kind: str, params: dict, owner: str, metric: str | None = None, dim: int | None = None) -> dict:
    """Validated index parameters with defaults filled (what the manifest stores); ``metric`` and ``dim``, when
    given, are checked against what the index can serve."""
    check_choice(kind, index_kinds(), owner, "index")
    codec = {name: params[name] for name in CODEC_PARAMS if name in params}
    out = INDEXES[kind].check_params({k: v for k, v in params.items() if k not in CODEC_PARAMS}, owner)
    if codec:
        out.update(CompressedIndex.check_params(codec, kind, owner, metric, dim))
    return out


def make_index(kind: str, dim: int, metric: str, params: dict, source: VectorSource) -> VectorIndex:
    """A new, empty index of ``kind`` with checked ``params``."""
    return _index_class(kind, params).create(dim, metric, params, source)


def load_index(kind: str, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> VectorIndex:
    """The index checkpoint ``path`` written by its ``write`` (raises ``DataFormatError`` when unreadable)."""
    return _index_class(kind, params).read(dim, metric, params, path, source)
