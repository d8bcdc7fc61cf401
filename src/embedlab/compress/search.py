"""Search over codes, and rescoring of candidates with higher-precision vectors.

Three kernels, chosen by the codec (the last stage of a chain):

* ``"hamming"`` (:class:`BinaryCodec`): queries are binarised too and ``faiss.IndexBinaryFlat`` ranks
  by Hamming distance; the score is ``d - 2 * hamming``, the inner product of the ±1 vectors;
* ``"adc"`` (:class:`PQCodec`, :class:`OPQCodec`): ``faiss.IndexPQ`` inner products by asymmetric
  distance computation (float query, coded database; Jégou et al. 2011, eq. 13);
* ``"decode"`` (every other codec): codes are decoded a block at a time and multiplied with the float
  queries (asymmetric: the query is never quantised); memory stays ``O(block * d)``.

Rescoring (Shakir, Aarsen & Lee 2024; Qdrant's "oversampling + rescoring") takes the best
``k * oversample`` candidates of a code search and re-ranks them with the inner product against
higher-precision vectors — typically float32 rows of a memory-mapped ``.npy`` file, read on demand.

Every function returns ``(scores, positions)``: float32 ``[nq, k]`` (higher is better) and int64
``[nq, k]`` sorted by score descending, ties by lower position, padded with ``-inf`` / ``-1``.
"""

from __future__ import annotations

import faiss
import numpy as np

from embedlab.compress.base import Codec
from embedlab.compress.binary import BinaryCodec
from embedlab.compress.chain import ChainCodec
from embedlab.compress.pq import PQCodec
from embedlab.compress.scalar import Float32Codec
from embedlab.compress.truncate import TruncateCodec
from embedlab.errors import InvalidInputError
from embedlab.params import check_int
from embedlab.selector import BitmapSelector
from embedlab.topk import topk, topk_blocks

_BLOCK = 8192  # code rows decoded at a time
_QUERY_BLOCK = 1024


def _last(codec: Codec) -> Codec:
    return codec.last if isinstance(codec, ChainCodec) else codec


def kernel_of(codec: Codec) -> str:
    """``"hamming"``, ``"adc"`` or ``"decode"``: how :class:`CodeSearcher` scores this codec's codes."""
    last = _last(codec)
    if isinstance(last, BinaryCodec):
        return "hamming" if last.query == "bits" else "decode"
    if isinstance(last, PQCodec):
        return "adc"
    return "decode"


class CodeSearcher:
    """Exhaustive top-``k`` search over codes held in RAM (see the module docstring for the kernels).

    ``codec`` must be fitted; ``codes`` is ``[n, codec.code_width]`` of ``codec.code_dtype``. The codes are
    held once: in a growing numpy buffer (``"decode"``) or inside the faiss index (``"hamming"``, ``"adc"``).
    """

    def __init__(self, codec: Codec, codes: np.ndarray | None = None):
        if not isinstance(codec, Codec) or not codec.is_fitted:
            raise InvalidInputError(f"CodeSearcher: codec must be a fitted Codec, got {codec!r}. Fit it first.")
        self.codec = codec
        self.kernel = kernel_of(codec)
        self._n = 0
        if self.kernel == "hamming":
            self._index = faiss.IndexBinaryFlat(codec.code_width * 8)
        elif self.kernel == "adc":
            self._index = _last(codec).adc_index(np.zeros((0, codec.code_width), np.uint8))
        else:
            self._buffer = np.zeros((0, codec.code_width), codec.code_dtype)
        if codes is not None:
            self.add(codes)

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def codes(self) -> np.ndarray:
        """A read-only view of the codes searched, ``[ntotal, code_width]``."""
        if self.kernel == "decode":
            view = self._buffer[: self._n]
        else:
            store = self._index.xb if self.kernel == "hamming" else self._index.codes
            view = (faiss.rev_swig_ptr(store.data(), store.size()) if self._n else np.zeros(0, np.uint8))
            view = view.reshape(self._n, self.codec.code_width)
        view = view.view()
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        """RAM held by the codes (``ntotal * bytes_per_vector``; the numpy buffer may reserve up to 2x)."""
        return self._n * self.codec.bytes_per_vector

    def add(self, codes: np.ndarray) -> None:
        """Append codes ``[n, code_width]``; their positions continue from :attr:`ntotal`."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.codec.code_width or codes.dtype != self.codec.code_dtype:
            raise InvalidInputError(
                f"CodeSearcher.add: codes must be {self.codec.code_dtype} of shape (n, {self.codec.code_width}), "
                f"got {codes.dtype} {codes.shape}. Encode with the searcher's codec ({self.codec.spec!r})."
            )
        if not len(codes):
            return
        codes = np.ascontiguousarray(codes)
        if self.kernel == "hamming":
            self._index.add(codes)
        elif self.kernel == "adc":
            self._index.add_sa_codes(codes)
        else:
            end = self._n + len(codes)
            if end > len(self._buffer):  # amortised growth: doubling capacity
                grown = np.empty((max(end, 2 * len(self._buffer)), self.codec.code_width), self.codec.code_dtype)
                grown[: self._n] = self._buffer[: self._n]
                self._buffer = grown
            self._buffer[self._n : end] = codes
        self._n += len(codes)

    def search(self, queries: np.ndarray, k: int, *, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` codes for float queries ``[nq, codec.dim_]``.

        ``subset`` restricts the search to these positions (1-D ints, or a bool mask of length ``ntotal``).
        """
        k = check_int(k, "CodeSearcher.search", "k")
        q = self.codec.transform_queries(queries)  # validates shape and dtype
        empty = (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        if subset is not None:
            subset = self._check_subset(subset)
            if subset.size == 0:
                return empty
        if self._n == 0:
            return empty
        if self.kernel == "hamming":
            allowed = BitmapSelector.of_rows(subset, self._n) if subset is not None else None  # alive while searching
            params = allowed.params() if allowed is not None else None
            dist, pos = self._index.search(np.packbits(q > 0, axis=1), min(k, self._n), params=params)
            return topk((self.codec.output_dim - 2 * dist).astype(np.float32), k, pos)
        if subset is not None:  # faiss.IndexPQ takes no selector, and the decode kernel gathers anyway
            sub = CodeSearcher(self.codec, self.codes[subset])
            scores, local = sub.search(queries, k)
            return scores, np.where(local >= 0, subset[np.maximum(local, 0)], -1).astype(np.int64)
        if self.kernel == "adc":
            scores, pos = self._index.search(_last(self.codec).adc_queries(q), min(k, self._n))
            return topk(scores, k, pos)
        return self._decode_search(q, k)

    def _check_subset(self, subset) -> np.ndarray:
        subset = np.asarray(subset)
        if subset.dtype == bool:
            if subset.shape != (self._n,):
                raise InvalidInputError(f"CodeSearcher.search: a subset mask must have shape ({self._n},), got {subset.shape}.")
            return np.flatnonzero(subset)
        if subset.ndim != 1 or not (subset.size == 0 or np.issubdtype(subset.dtype, np.integer)):
            raise InvalidInputError(
                f"CodeSearcher.search: subset must be a 1-D int array of positions or a bool mask, got {subset.dtype} {subset.shape}.")
        if subset.size and (subset.min() < 0 or subset.max() >= self._n):
            raise InvalidInputError(f"CodeSearcher.search: subset positions must lie in [0, {self._n}), got {subset.min()}..{subset.max()}.")
        return subset.astype(np.int64)

    def _decode_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        last = _last(self.codec)
        plain = isinstance(last, (Float32Codec, TruncateCodec))  # codes already are float32 vectors
        out_s = np.empty((len(q), k), np.float32)
        out_p = np.empty((len(q), k), np.int64)
        for qs in range(0, len(q), _QUERY_BLOCK):
            qb = q[qs : qs + _QUERY_BLOCK]
            blocks = ((qb @ (block if plain else last.decode(block)).T, start)
                      for start in range(0, self._n, _BLOCK) for block in [self._buffer[start : min(self._n, start + _BLOCK)]])
            out_s[qs : qs + len(qb)], out_p[qs : qs + len(qb)] = topk_blocks(blocks, len(qb), k)
        return out_s, out_p


def search_codes(codec: Codec, codes: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One-shot :class:`CodeSearcher` search: top-``k`` of ``codes`` for float ``queries``."""
    return CodeSearcher(codec, codes).search(queries, k)


def rescore(
    queries: np.ndarray,
    candidates: np.ndarray,
    vectors,
    k: int,
    *,
    codec: Codec | None = None,
    query_block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank candidate positions by inner product with higher-precision ``vectors``; keep the best ``k``.

    ``queries`` float ``[nq, d]``; ``candidates`` int ``[nq, c]`` positions into ``vectors`` (``-1`` =
    none); ``vectors`` any ``[n, w]`` array, typically ``np.load(path, mmap_mode="r")``: only the rows
    named by candidates are read. With ``codec`` the rows are codes decoded by it (e.g. int8 codes kept on
    disk) and queries pass through ``codec.transform_queries``; without, the rows are float vectors.
    """
    k = check_int(k, "rescore", "k")
    q = np.asarray(queries, dtype=np.float32)
    cand = np.asarray(candidates)
    if q.ndim != 2 or cand.ndim != 2 or len(q) != len(cand) or not np.issubdtype(cand.dtype, np.integer):
        raise InvalidInputError(
            f"rescore: queries must be (nq, d) and candidates an int array (nq, c), got {q.shape} and {cand.dtype} {cand.shape}."
        )
    if codec is not None:
        q = codec.transform_queries(q)
    width = codec.code_width if codec is not None else q.shape[1]
    if np.ndim(vectors) != 2 or vectors.shape[1] != width:
        raise InvalidInputError(
            f"rescore: vectors must have shape (n, {width}), got {np.shape(vectors)}. "
            "Pass the rescoring vectors (or codes with their codec) of the searched collection."
        )
    n = len(vectors)
    if cand.size and cand.max() >= n:
        raise InvalidInputError(f"rescore: candidates must be positions below {n}, got {cand.max()}.")
    out_s = np.empty((len(q), k), np.float32)
    out_p = np.empty((len(q), k), np.int64)
    for qs in range(0, len(q), query_block):
        c = cand[qs : qs + query_block].astype(np.int64)
        valid = c >= 0
        s = np.full(c.shape, -np.inf, np.float32)
        if len(c) == 1:  # one query (a search per call): its candidates are distinct, read them as they come
            rows = np.asarray(vectors[c[valid]])
            rows = codec.decode(rows) if codec is not None else rows.astype(np.float32, copy=False)
            s[valid] = rows @ q[qs]
        else:  # queries of a block share candidates: read each row once, in sorted order
            uniq, inverse = np.unique(c[valid], return_inverse=True)
            rows = np.asarray(vectors[uniq])  # sequential-ish reads from a memory map
            rows = codec.decode(rows) if codec is not None else rows.astype(np.float32, copy=False)
            qi = np.nonzero(valid)[0]
            s[valid] = np.einsum("ij,ij->i", q[qs : qs + query_block][qi], rows[inverse])
        out_s[qs : qs + len(c)], out_p[qs : qs + len(c)] = topk(s, k, np.where(valid, c, -1))
    return out_s, out_p
