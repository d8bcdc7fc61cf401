"""What both collection backends share: query and text inputs, the encoder a collection names, ``with`` support.

:class:`~embedlab.index.collection.collection.Collection` (a local folder) and
:class:`~embedlab.index.collection.milvus.MilvusCollection` (Milvus behind the same API) both derive from
:class:`CollectionBase`; it needs ``dim``, ``metric``, ``_manifest`` (its ``"encoder"``), ``_encoder_obj`` and
``_layer`` (the multi-vector layer or ``None``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.index.collection.inputs import check_vectors, prepare_vectors, warnings_at_caller


class CollectionBase:
    """Shared input handling of the two backends (see the module docstring)."""

    dim: int
    metric: str

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _queries(self, queries: Any, owner: str) -> np.ndarray:
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(t, str) for t in queries):
            queries = self._encode(list(queries), owner)
        elif isinstance(queries, str):
            raise InvalidInputError(f"{owner}: queries must be a list of texts or a float array [nq, {self.dim}], got a "
                                    "single str. Wrap it in a list.")
        arr = np.asarray(queries) if not isinstance(queries, np.ndarray) else queries
        if arr.ndim == 1 and arr.shape[0] == self.dim and arr.dtype != object:
            raise InvalidInputError(f"{owner}: queries must have shape (nq, {self.dim}), got {arr.shape}. "
                                    "Use queries[None, :] for one query.")
        nq = arr.shape[0] if arr.ndim >= 1 else 0
        return prepare_vectors(check_vectors(arr, nq, self.dim, owner, "queries"), self.metric, owner, "queries")

    def _encode(self, texts: list[str], owner: str) -> np.ndarray:
        encoder = self._load_encoder(owner)
        with warnings_at_caller():  # the truncation warning names the caller's line, not this file
            return encoder.encode(texts)

    def _load_encoder(self, owner: str):
        if self._encoder_obj is None:
            name = self._manifest.get("encoder")
            if name is None:
                raise InvalidInputError(
                    f"{owner}: texts need the collection's encoder, got a collection created without one. Pass "
                    "vectors, or create the collection with encoder=... (CLI: embedlab index --model), or open it with "
                    "encoder=... (CLI: --model).")
            from embedlab.models import Encoder

            self._encoder_obj = Encoder.load(name)
        return self._encoder_obj

    @property
    def encoder(self):
        """The encoder for ``texts=`` (loaded on first use), or ``None`` when the collection has none."""
        if self._encoder_obj is None and self._manifest.get("encoder") is not None:
            self._load_encoder("Collection.encoder")
        return self._encoder_obj

    @property
    def multivector(self) -> bool:
        """Whether items are token vectors (searched by MaxSim), so ``texts=`` go through ``encode_tokens``."""
        return self._layer is not None

    @property
    def encoder_name(self) -> str | None:
        """The model the manifest names for ``texts=`` (a bundled name or a folder), without loading it."""
        return self._manifest.get("encoder")


def pad_hits(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` ``[nq, c]`` widened to ``[nq, k]`` with ``-inf`` / ``-1`` (``c <= k``)."""
    out_s = np.full((len(scores), k), -np.inf, np.float32)
    out_r = np.full((len(rows), k), -1, np.int64)
    out_s[:, : scores.shape[1]], out_r[:, : rows.shape[1]] = scores, rows
    return out_s, out_r


def encoder_spec(encoder: Any, dim: int, owner: str) -> tuple[str | None, Any]:
    """``(name stored in the manifest, encoder object or None)`` after checking the encoder's width."""
    if encoder is None:
        return None, None
    if isinstance(encoder, (str, os.PathLike)):
        from embedlab.models import Encoder

        name, obj = str(encoder), Encoder.load(encoder)
    elif hasattr(encoder, "encode") and hasattr(encoder, "dim"):
        name, obj = getattr(encoder, "source", None), encoder
        if not name:
            raise InvalidInputError(f"{owner}: encoder must have a source folder to store in the manifest, got {encoder!r}.")
    else:
        raise InvalidInputError(f"{owner}: encoder must be a model name, a folder or an Encoder, got {type(encoder).__name__}.")
    if obj.dim != dim:
        raise InvalidInputError(f"{owner}: encoder must produce dim={dim} vectors, got an encoder of width {obj.dim}. "
                                "Create the collection with dim=encoder.dim.")
    return name, obj
