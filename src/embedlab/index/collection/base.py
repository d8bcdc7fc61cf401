"""What both collection backends share: query and text inputs, the encoder a collection names, ``with`` support.

:class:`~embedlab.index.collection.collection.Collection` (a local folder) and
:class:`~embedlab.index.collection.milvus.MilvusCollection` (Milvus behind the same API) both derive from
:class:`CollectionBase`; it needs ``dim``, ``metric``, ``_manifest`` (its ``"encoder"`` and ``"space"``),
``_encoder_obj``, ``_query_alignment``, ``_layer`` (the multi-vector layer or ``None``) and ``_vdim`` (the width
of the vectors it searches).

A collection created with an encoder records the encoder's embedding space (:attr:`Encoder.space
<embedlab.models.Encoder.space>`). Opened with another encoder, it accepts one of the same space for everything,
and one *aligned* to its space (a distilled student, a compatibly trained or a mapped model; see
:mod:`embedlab.models.alignment`) for queries only, mapping their vectors when the alignment has a map; any other
is refused with both models named, unless ``allow_foreign_encoder=True``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from embedlab.errors import ConflictError, InvalidInputError
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

    def _search_queries(self, queries: Any, owner: str) -> tuple[np.ndarray, Any]:
        """``(q float32 [nq, d], layer payload or None)``: the vectors a search scores with; for a multi-vector
        collection the layer's query vectors (width ``_vdim``) and its payload for the rerank of candidates."""
        if self._layer is None:
            return self._queries(queries, owner), None
        with warnings_at_caller():
            q, payload = self._layer.query(queries, owner)
        return prepare_vectors(check_vectors(q, len(q), self._vdim, owner, "queries"), self.metric, owner,
                               "queries"), payload

    def _encode(self, texts: list[str], owner: str, role: str = "queries") -> np.ndarray:
        """``texts`` as vectors of the collection's space: ``role`` is ``"queries"`` (an aligned encoder's map is
        applied) or ``"documents"`` (stored; an encoder aligned for queries only is refused)."""
        encoder = self._load_encoder(owner)
        alignment = self._query_alignment
        if alignment is not None and role == "documents":
            raise ConflictError(
                f"{owner}: texts to store must be encoded by the collection's own model {self.encoder_name!r}, got "
                f"{encoder.source!r}, which is aligned to it ({alignment.method}) for queries only. Add vectors "
                "encoded by the collection's model, or open the collection without encoder=.")
        with warnings_at_caller():  # the truncation warning names the caller's line, not this file
            vectors = encoder.encode(texts)
        return vectors if alignment is None else alignment.apply(vectors)

    def _load_encoder(self, owner: str):
        if self._encoder_obj is None:
            name = self._manifest.get("encoder")
            if name is None:
                raise InvalidInputError(
                    f"{owner}: texts need the collection's encoder, got a collection created without one. Pass "
                    "vectors, or create the collection with encoder=... (CLI: embedlab index --model), or open it with "
                    "encoder=... (CLI: --model).")
            from embedlab.models import Encoder

            encoder = Encoder.load(name)
            space = self._manifest.get("space")
            if space is not None and encoder.space != space:
                raise ConflictError(
                    f"{owner}: the collection's model {name!r} must still be the model that encoded it (space "
                    f"{space}), got a folder whose files changed (space {encoder.space}): its vectors would not match "
                    "the stored ones. Re-index with the new model, or open with encoder= (and allow_foreign_encoder="
                    "True to search anyway).")
            self._encoder_obj = encoder
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
    name, obj = _resolve_encoder(encoder, owner)
    if obj is not None:
        _check_width(obj.dim, dim, owner, "")
    return name, obj


def open_encoder(encoder: Any, manifest: dict, owner: str, allow_foreign: bool = False) -> tuple[Any, Any]:
    """``(encoder object, alignment to apply to its queries or None)`` for a collection opened with ``encoder``
    (see the module docstring for what is accepted). ``(None, None)`` when ``encoder`` is None."""
    name, obj = _resolve_encoder(encoder, owner, need_source=False)
    if obj is None:
        return None, None
    space, dim, own = manifest.get("space"), int(manifest["dim"]), getattr(obj, "space", None)
    if space is None or own == space:
        _check_width(obj.dim, dim, owner, "")
        return obj, None
    alignment = getattr(obj, "alignment", None)
    if alignment is not None and alignment.space == space:
        if manifest.get("layer") is not None:
            raise ConflictError(f"{owner}: a multi-vector collection must be searched with its own model "
                                f"{manifest.get('encoder')!r}, got {name!r}, which is aligned to it for pooled "
                                "vectors only. Open it with its own model.")
        _check_width(alignment.dim or obj.dim, dim, owner, " after its alignment map")
        return obj, alignment
    if allow_foreign:
        _check_width(obj.dim, dim, owner, "")
        return obj, None
    aligned = ("records no alignment" if alignment is None
               else f"is aligned to {alignment.model!r} (space {alignment.space}) instead")
    raise ConflictError(
        f"{owner}: encoder must produce vectors in the space of the collection's model {manifest.get('encoder')!r} "
        f"(space {space}), got {name!r} (space {own}), which is neither that model nor aligned to it (it "
        f"{aligned}). Use the collection's model; or align this one to it (embedlab.train.compat.align) or distil a "
        "student from it (embedlab.train.distill); or pass allow_foreign_encoder=True to search anyway.")


def _check_width(width: int, dim: int, owner: str, after: str) -> None:
    if width != dim:
        raise InvalidInputError(f"{owner}: encoder must produce dim={dim} vectors{after}, got an encoder of width "
                                f"{width}. Create the collection with dim=encoder.dim, or use an encoder (or map) "
                                "of that width.")


def _resolve_encoder(encoder: Any, owner: str, need_source: bool = True) -> tuple[str | None, Any]:
    """``(name, encoder object)``; ``need_source``: the name goes into a manifest, so it must be a loadable folder."""
    if encoder is None:
        return None, None
    if isinstance(encoder, (str, os.PathLike)):
        from embedlab.models import Encoder

        name, obj = str(encoder), Encoder.load(encoder)
    elif hasattr(encoder, "encode") and hasattr(encoder, "dim"):
        name, obj = getattr(encoder, "source", None) or (None if need_source else repr(encoder)), encoder
        if not name:
            raise InvalidInputError(f"{owner}: encoder must have a source folder to store in the manifest, got {encoder!r}.")
    else:
        raise InvalidInputError(f"{owner}: encoder must be a model name, a folder or an Encoder, got {type(encoder).__name__}.")
    return name, obj
