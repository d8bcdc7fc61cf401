"""Product quantisation (PQ) and optimised product quantisation (OPQ), on faiss's k-means and kernels.

PQ (Jégou, Douze & Schmid 2011, "Product Quantization for Nearest Neighbor Search", eq. 8-9) splits a
vector into ``m`` sub-vectors of ``d / m`` coordinates and replaces each by the nearest of ``2**nbits``
centroids learned by k-means on that subspace: ``m * nbits / 8`` bytes per vector. Inner products
between a float query and a code are sums of ``m`` table look-ups (asymmetric distance computation,
their eq. 13), which :mod:`embedlab.compress.search` runs through ``faiss.IndexPQ``.

OPQ (Ge, He, Ke & Sun 2013, "Optimized Product Quantization", eq. 4 and the non-parametric solution
of section 3.2) first applies a learned orthogonal rotation ``R`` so the subspaces balance the
variance; ``decode`` rotates back, so reconstructions live in the original space.
"""

from __future__ import annotations

import faiss
import numpy as np

from embedlab.compress.base import Codec
from embedlab.errors import InvalidInputError
from embedlab.params import check_int

MAX_NBITS = 16


class PQCodec(Codec):
    """Product quantisation with ``m`` sub-quantisers of ``2**nbits`` centroids each.

    Learned: ``centroids_`` float32 ``[m, 2**nbits, d / m]``. Fitting needs at least ``2**nbits``
    vectors (one per centroid; faiss recommends ~39 per centroid) and ``m`` must divide ``d``.
    ``seed`` seeds faiss's k-means. Codes: ``uint8 [n, ceil(m * nbits / 8)]``.
    """

    kind = "pq"
    _params = ("m", "nbits", "seed")
    _positional = ("m", "nbits")
    _arrays = ("centroids_",)

    def __init__(self, m: int, nbits: int = 8, seed: int = 0):
        owner = type(self).__name__
        check_int(m, owner, "m", hint="It is the number of sub-quantisers, e.g. 'pq:64'.")
        check_int(nbits, owner, "nbits", high=MAX_NBITS, hint="8 (256 centroids per sub-quantiser) is usual.")
        check_int(seed, owner, "seed", low=0)
        self.m, self.nbits, self.seed = int(m), int(nbits), int(seed)

    # ------------------------------------------------------------------ fitting
    def check_dim(self, dim: int, owner: str | None = None) -> int:
        if dim % self.m:
            divisors = [k for k in range(1, dim + 1) if dim % k == 0 and k <= 128]
            raise InvalidInputError(
                f"{owner or type(self).__name__ + '.fit'}: m must divide the dimension {dim}, got m={self.m}. "
                f"Pick one of {divisors}."
            )
        return dim

    def _check_fit_input(self, x: np.ndarray) -> None:
        owner = f"{type(self).__name__}.fit"
        n, d = x.shape
        self.check_dim(d)
        if n < 2**self.nbits:
            raise InvalidInputError(
                f"{owner}: vectors must number at least 2**nbits = {2**self.nbits} (one per centroid), got {n}. "
                f"Fit on more vectors or lower nbits (faiss recommends >= {39 * 2**self.nbits})."
            )

    def _train_pq(self, x: np.ndarray) -> faiss.ProductQuantizer:
        pq = faiss.ProductQuantizer(x.shape[1], self.m, self.nbits)
        pq.cp.seed = self.seed
        pq.cp.min_points_per_centroid = 1  # our own check above replaces faiss's printed warning
        pq.cp.verbose = False
        pq.train(x)
        return pq

    def _fit(self, x):
        self._check_fit_input(x)
        pq = self._train_pq(x)
        self._set_pq(pq)

    def _set_pq(self, pq: faiss.ProductQuantizer) -> None:
        self.centroids_ = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub).astype(np.float32)
        self._pq = pq

    def _restore(self) -> None:
        ksub = 2**self.nbits
        if self.centroids_.ndim != 3 or self.centroids_.shape[:2] != (self.m, ksub):
            from embedlab.errors import DataFormatError

            raise DataFormatError(
                f"{type(self).__name__}.load: centroids_ must have shape ({self.m}, {ksub}, dsub), got {self.centroids_.shape}."
            )
        pq = faiss.ProductQuantizer(self.m * self.centroids_.shape[2], self.m, self.nbits)
        faiss.copy_array_to_vector(np.ascontiguousarray(self.centroids_.ravel()), pq.centroids)
        self._pq = pq

    @property
    def pq(self) -> faiss.ProductQuantizer:
        """The faiss ``ProductQuantizer`` holding ``centroids_`` (rebuilt after load)."""
        self._check_fitted("pq")
        return self._pq

    # ------------------------------------------------------------------ codes
    def _encode(self, x):
        return self._pq.compute_codes(x)

    def _decode(self, codes):
        return self._pq.decode(np.ascontiguousarray(codes))

    @property
    def code_width(self) -> int:
        return (self.m * self.nbits + 7) // 8

    def adc_index(self, codes: np.ndarray) -> faiss.IndexPQ:
        """A ``faiss.IndexPQ`` (inner product) over ``codes``, sharing this codec's centroids."""
        self._check_fitted("adc_index")
        index = faiss.IndexPQ(self.dim_, self.m, self.nbits, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.ascontiguousarray(self.centroids_.ravel()), index.pq.centroids)
        index.is_trained = True
        if len(codes):
            index.add_sa_codes(np.ascontiguousarray(codes))
        return index

    def adc_queries(self, queries: np.ndarray) -> np.ndarray:
        """Queries as the ADC index expects them (the identity for PQ; rotated for OPQ)."""
        return queries


class OPQCodec(PQCodec):
    """PQ after a learned rotation (OPQ, see the module docstring). Learned: ``rotation_`` float32
    ``[d, d]`` (orthonormal rows, applied as ``x @ rotation_.T``) and ``centroids_``.

    ``niter`` is the number of alternating rotation/codebook steps.
    """

    kind = "opq"
    _params = ("m", "nbits", "seed", "niter")
    _arrays = ("rotation_", "centroids_")

    def __init__(self, m: int, nbits: int = 8, seed: int = 0, niter: int = 25):
        super().__init__(m, nbits, seed)
        check_int(niter, "OPQCodec", "niter")
        self.niter = int(niter)

    def _fit(self, x):
        self._check_fit_input(x)
        opq = faiss.OPQMatrix(x.shape[1], self.m)
        opq.niter = self.niter
        opq.verbose = False
        # faiss's OPQ trains a temporary PQ per iteration; its own printed warning is replaced by our check
        opq.niter_pq = 4
        opq.max_train_points = len(x)
        inner_pq = faiss.ProductQuantizer(x.shape[1], self.m, self.nbits)
        inner_pq.cp.min_points_per_centroid = 1
        inner_pq.cp.seed = self.seed
        opq.pq = inner_pq
        opq.train(x)
        rotation = faiss.vector_to_array(opq.A).reshape(x.shape[1], x.shape[1]).astype(np.float32)
        pq = self._train_pq(np.ascontiguousarray(x @ rotation.T))
        self.rotation_ = rotation
        self._set_pq(pq)

    def _encode(self, x):
        return self._pq.compute_codes(np.ascontiguousarray(x @ self.rotation_.T))

    def _decode(self, codes):
        return self._pq.decode(np.ascontiguousarray(codes)) @ self.rotation_

    def adc_queries(self, queries):
        return np.ascontiguousarray(queries @ self.rotation_.T, dtype=np.float32)
