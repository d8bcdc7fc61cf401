"""Matryoshka truncation: keep the first ``dim`` coordinates and re-normalise.

Kusupati et al. 2022, "Matryoshka Representation Learning": a model trained with the loss summed over
nested prefixes ``x[:m]`` (their eq. 1) keeps most of its quality on short prefixes. On a model that
was not trained that way (all-MiniLM-L6-v2), truncation still works but loses more; the compression
benchmark reports what it measures. Codes are the float32 prefixes ``[n, dim]`` (``4 * dim`` bytes),
so a truncation is usually chained with a quantiser: ``"truncate:256+int8"``.
"""

from __future__ import annotations

import numpy as np

from embedlab.compress.base import Codec
from embedlab.errors import InvalidInputError
from embedlab.params import check_int


class TruncateCodec(Codec):
    """Prefix of ``dim`` coordinates, L2-normalised when ``normalize`` (queries are mapped the same way)."""

    kind = "truncate"
    code_dtype = np.dtype(np.float32)
    _params = ("dim", "normalize")

    def __init__(self, dim: int, normalize: bool = True):
        check_int(dim, "TruncateCodec", "dim", hint="E.g. 'truncate:256'.")
        if not isinstance(normalize, bool):
            raise InvalidInputError(f"TruncateCodec: normalize must be True or False, got {normalize!r}.")
        self.dim = int(dim)
        self.normalize = normalize

    def check_dim(self, dim: int, owner: str | None = None) -> int:
        if dim < self.dim:
            raise InvalidInputError(
                f"{owner or 'TruncateCodec.fit'}: vectors must have at least dim={self.dim} columns, got {dim}. "
                f"Use a prefix length <= {dim}."
            )
        return self.dim

    def _fit(self, x):
        self.check_dim(x.shape[1])

    def _prefix(self, x: np.ndarray) -> np.ndarray:
        p = np.array(x[:, : self.dim], dtype=np.float32)
        if self.normalize:
            p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return p

    def _encode(self, x):
        return self._prefix(x)

    def _decode(self, codes):
        return np.array(codes, dtype=np.float32)

    def transform_queries(self, queries):
        return self._prefix(super().transform_queries(queries))

    @property
    def output_dim(self) -> int:
        self._check_fitted("output_dim")
        return self.dim

    @property
    def code_width(self) -> int:
        return self.dim
