"""A single-vector dense retriever: an encoder plus exact inner-product search."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from embedlab.errors import InvalidInputError, NotFittedError
from embedlab.index.search.exact import exact_search
from embedlab.types import Hits


class DenseRetriever:
    """Encode documents once (``fit``), encode queries per ``search``, rank by inner product.

    ``dim`` keeps the first ``dim`` coordinates on both sides (``Encoder.encode(dim=...)``,
    Matryoshka truncation, Kusupati et al. 2022); ``query_prompt`` is prepended to queries only.
    """

    def __init__(self, encoder, *, dim: int | None = None, query_prompt: str | None = None, batch_size: int = 64) -> None:
        self.encoder, self.dim, self.query_prompt, self.batch_size = encoder, dim, query_prompt, batch_size
        self.embeddings_: np.ndarray | None = None

    def fit(self, documents: Sequence[str] | None = None, *, embeddings: np.ndarray | None = None) -> "DenseRetriever":
        """Encode ``documents``, or take precomputed float32 ``embeddings [n, d]`` (truncated to
        ``dim`` and re-normalised when wider, which equals encoding with ``dim``)."""
        if (documents is None) == (embeddings is None):
            raise InvalidInputError("DenseRetriever.fit: pass exactly one of documents or embeddings, got "
                                    f"{'both' if documents is not None else 'neither'}.")
        if embeddings is None:
            embeddings = self.encoder.encode(list(documents), dim=self.dim, batch_size=self.batch_size)
        else:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2:
                raise InvalidInputError(f"DenseRetriever.fit: embeddings must have shape (n, d), got {embeddings.shape}.")
            if self.dim is not None and embeddings.shape[1] != self.dim:
                if embeddings.shape[1] < self.dim:
                    raise InvalidInputError(
                        f"DenseRetriever.fit: embeddings must be at least dim={self.dim} wide, got {embeddings.shape[1]}."
                    )
                embeddings = embeddings[:, : self.dim]
                embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        self.embeddings_ = np.ascontiguousarray(embeddings, dtype=np.float32)
        return self

    def search(self, queries: Sequence[str], k: int) -> Hits:
        """Top-``k`` documents per query by inner product: batched ``Hits`` over corpus positions."""
        if self.embeddings_ is None:
            raise NotFittedError("DenseRetriever.search: no documents. Call fit(documents) first.")
        q = self.encoder.encode(list(queries), dim=self.dim, prompt=self.query_prompt, batch_size=self.batch_size)
        scores, ids = exact_search(q, self.embeddings_, k)
        return Hits(ids, scores)
