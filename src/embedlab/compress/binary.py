"""Binary quantisation: one sign bit per dimension, searched by Hamming distance.

Each coordinate keeps only ``x_j > 0`` (Charikar 2002, "Similarity Estimation Techniques from
Rounding Algorithms": for random hyperplanes ``P[h(x) != h(y)] = θ(x, y) / π``; embedding
coordinates play the hyperplanes here, as in Shakir, Aarsen & Lee 2024, "Binary and Scalar Embedding
Quantization"). Codes are ``uint8 [n, ceil(d / 8)]``, bits packed big-endian per byte (``numpy.packbits``),
32x smaller than float32. Between two codes, ``d - 2 * hamming`` is the inner product of the ±1 vectors.

``query="bits"`` (default) binarises the query too and ranks by Hamming distance (faiss binary flat);
``query="float"`` keeps the float query and ranks by ``q · sign(x)`` (asymmetric, as in Gordo et al. 2014,
"Asymmetric Distances for Binary Embeddings"): the same 1 bit per dimension in RAM, a slower scan, better ranks.
"""

from __future__ import annotations

import numpy as np

from embedlab.compress.base import Codec
from embedlab.params import check_choice

_QUERY = ("bits", "float")


class BinaryCodec(Codec):
    """Sign bits (see the module docstring). ``decode`` returns the ±1 vector scaled to unit norm."""

    kind = "binary"
    _params = ("query",)

    def __init__(self, query: str = "bits"):
        check_choice(query, _QUERY, "BinaryCodec", "query",
                     hint="'bits' = Hamming search, 'float' = float query against the sign bits.")
        self.query = query

    def _fit(self, x):
        pass

    def _encode(self, x):
        return np.packbits(x > 0, axis=1)

    def _decode(self, codes):
        bits = np.unpackbits(codes, axis=1, count=self.dim_).astype(np.float32)
        return (2.0 * bits - 1.0) / np.float32(np.sqrt(self.dim_))

    @property
    def code_width(self) -> int:
        self._check_fitted("code_width")
        return (self.dim_ + 7) // 8
