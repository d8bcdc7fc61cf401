"""Extension point between a caller's inputs and the single-vector store (used by multi-vector collections).

A :class:`CollectionLayer` turns what the caller adds (e.g. :class:`~embedlab.types.MultiVectors` or texts)
into the single float32 vectors the collection indexes, keeps its own side data durable beside them, and
re-ranks the candidates the filtered single-vector search returns. The collection calls it at fixed
points (see ``Collection._write`` and ``Collection.search``). :data:`LAYERS` maps the manifest's layer name
to its class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embedlab.index.multivector.layer import MuveraLayer
from embedlab.params import check_choice


class CollectionLayer(Protocol):
    """Contract (every method may raise ``InvalidInputError`` for bad input before any state changes)."""

    name: str

    def config(self) -> dict:
        """JSON-ready settings, stored as ``manifest["layer"] = {"name": name, **config}``."""

    def prepare(self, vectors: Any, texts: list[str] | None, n: int, owner: str) -> tuple[np.ndarray, Any]:
        """Validate one batch and map it to single vectors float32 ``[n, dim]`` plus a payload; no side effects."""

    def append(self, start_row: int, payload: Any) -> None:
        """Durably write ``payload`` for rows ``start_row ..`` (called after the vectors are fsynced and before the
        SQLite commit; data for rows ``>= n_rows`` after a crash must be ignored by :meth:`open`)."""

    def open(self, n_rows: int, generation: int) -> None:
        """Attach to the layer's files for ``generation``, seeing only rows ``< n_rows``."""

    def query(self, queries: Any, owner: str) -> tuple[np.ndarray, Any]:
        """Map queries to single query vectors float32 ``[nq, dim]`` plus a query payload for :meth:`rerank`."""

    def candidates(self, k: int) -> int:
        """How many single-vector candidates to fetch (all satisfying the filter) to return ``k`` after rerank."""

    def rerank(self, query_payload: Any, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` int64 ``[nq, c]`` (``-1`` padded) -> ``(scores float32 [nq, k], rows int64 [nq, k])``, best first."""

    def compact(self, keep_rows: np.ndarray, generation: int) -> None:
        """Write the files of ``generation`` holding only ``keep_rows`` (renumbered ``0..``) before the switch."""

    def generation_files(self, folder: Path) -> dict[int, list[Path]]:
        """This layer's files on disk by generation; the writer deletes those of old generations once no reader
        holds their lease (see :mod:`embedlab.index.collection.leases`)."""


LAYERS = {"multivector": MuveraLayer}
"""Layer name -> class; the class has ``create(folder, dim, metric, options, owner) -> config dict`` (writes its
initial files into the new collection folder, validates ``options``) and ``load(folder, config, dim, metric)``."""


def create_layer(name: str, folder: Path, dim: int, metric: str, options: Any, owner: str) -> dict:
    """Initialise layer ``name`` in a new collection folder; returns ``manifest["layer"]``."""
    config = LAYERS[check_choice(name, LAYERS, owner, "layer")].create(folder, dim, metric, options, owner)
    return {"name": name, **config}


def load_layer(folder: Path, manifest_layer: dict | None, dim: int, metric: str) -> CollectionLayer | None:
    """Instantiate the layer a manifest names (``None`` when the collection has none)."""
    if not manifest_layer:
        return None
    name = check_choice(manifest_layer.get("name"), LAYERS, "Collection.open", "layer")
    return LAYERS[name].load(folder, manifest_layer, dim, metric)
