"""MUVERA fixed dimensional encodings (Dhulipala, Hadian, Jayaram, Lee & Mirrokni 2024).

"MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings" (NeurIPS 2024, arXiv:2405.19504)
maps a set of token vectors to one vector so that the inner product of a query's encoding and a
document's encoding approximates their Chamfer similarity ``CH(Q, P) = sum_q max_p <q, p>`` (eq. 1),
which turns multi-vector retrieval into ordinary single-vector search plus an exact rerank.

The construction of §2 ("Fixed Dimensional Encodings"), with the symbols used here:

* **Space partitioning** by SimHash: ``k_sim`` Gaussian vectors ``g_1..g_k`` give every token ``x`` a
  partition ``phi(x) in [0, B)``, ``B = 2**k_sim``, from the bits ``1(<g_i, x> > 0)``.
* **Blocks**: for partition ``k`` the query block is the sum ``q(k) = sum_{q: phi(q)=k} q`` and the
  document block the centroid ``p(k) = (1/|P ∩ phi^-1(k)|) sum_{p: phi(p)=k} p``. Then
  ``<F_q(Q), F_doc(P)> = sum_k sum_{q: phi(q)=k} <q, p(k)>``: each query token meets the average of
  the document tokens in its own partition, a proxy for its nearest document token.
* **Filling empty partitions** (documents only, ``fill_empty_partitions=True``): if no document token
  falls in partition ``k``, ``p(k)`` is the document token whose SimHash bits are closest to ``k`` in
  Hamming distance (ties: the earliest token), so a query token always meets some document token.
* **Inner projection** ``psi(x) = (1/sqrt(d_proj)) S x`` with ``S`` a random ``{-1, +1}``
  ``[d_proj, d]`` matrix, applied to every block (``d_proj=None`` keeps the blocks as they are).
* **Repetitions**: ``r_reps`` independent draws of ``(g, S)``; the encoding is their concatenation,
  ``r_reps * B * d_proj`` wide (``20 * 32 * 16 = 10,240`` with the defaults, those of the fastembed
  and Google reference implementations).
* **Final projection** ``psi'`` (optional, ``final_dim``): a random linear map to ``final_dim``
  coordinates. As in the authors' reference code it is a Count-Sketch (each coordinate is added, with
  a random sign, to one random output coordinate): inner products are preserved in expectation at
  O(dim) cost per vector.

All randomness is drawn from ``numpy.random.default_rng([seed, d])``: the same ``seed`` and token
dimension ``d`` always give the same encodings, so queries and documents encoded by two
``Muvera`` objects with equal parameters are comparable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from embedlab.errors import InvalidInputError
from embedlab.index.multivector.maxsim import check_multivectors, item_blocks
from embedlab.params import check_int
from embedlab.types import MultiVectors

DIM_WARN = 65_536  # an FDE wider than this costs > 256 KiB per document: warn
DIM_MAX = 1 << 24  # wider than this is certainly a mistake: refuse
_K_SIM_MAX = 20
_CHUNK_CELLS = 1 << 22  # tokens x (partitions or projected width) handled per encoding chunk


@dataclass(frozen=True)
class _Draw:
    """The random matrices for one token dimension ``d``."""

    hyperplanes: np.ndarray  # float32 [d, r_reps * k_sim]
    signs: np.ndarray | None  # float32 [d, r_reps * d_proj], entries ±1/sqrt(d_proj); None = identity
    sketch: sp.csr_matrix | None  # [fde_dim, final_dim] Count-Sketch, or None


class Muvera:
    """Fixed dimensional encodings of token-vector sets (MUVERA; see the module docstring).

    Parameters map to the paper's symbols: ``k_sim`` (SimHash bits, ``B = 2**k_sim`` partitions),
    ``d_proj`` (inner projection width, ``None`` for none), ``r_reps`` (repetitions), ``final_dim``
    (``d_final`` of the final projection, ``None`` for none). ``seed`` fixes every random draw.
    ``input_dim_`` is set by the first encoding and checked on every later one.
    """

    def __init__(
        self,
        *,
        k_sim: int = 5,
        d_proj: int | None = 16,
        r_reps: int = 20,
        seed: int = 0,
        final_dim: int | None = None,
        fill_empty_partitions: bool = True,
    ) -> None:
        check_int(k_sim, "Muvera", "k_sim (the number of SimHash bits (2**k_sim partitions))", low=0)
        if k_sim > _K_SIM_MAX:
            raise InvalidInputError(
                f"Muvera: k_sim must be at most {_K_SIM_MAX}, got {k_sim} (2**{k_sim} partitions per repetition). "
                "The paper uses 2-6; try k_sim=5."
            )
        check_int(r_reps, "Muvera", "r_reps (the number of repetitions)")
        if d_proj is not None:
            check_int(d_proj, "Muvera", "d_proj (the inner projection width (None for no projection))")
        if final_dim is not None:
            check_int(final_dim, "Muvera", "final_dim (the final projection width (None for no final projection))")
        check_int(seed, "Muvera", "seed (the random seed)", low=0)
        if not isinstance(fill_empty_partitions, bool):
            raise InvalidInputError(
                f"Muvera: fill_empty_partitions must be a bool, got {type(fill_empty_partitions).__name__}."
            )
        self.k_sim, self.d_proj, self.r_reps = int(k_sim), d_proj, int(r_reps)
        self.seed, self.final_dim, self.fill_empty_partitions = int(seed), final_dim, fill_empty_partitions
        self.input_dim_: int | None = None
        self._draws: dict[int, _Draw] = {}
        if d_proj is not None:
            self._check_size(None)

    # ------------------------------------------------------------------ sizes
    @property
    def partitions(self) -> int:
        """``B = 2**k_sim``."""
        return 1 << self.k_sim

    def fde_dim(self, input_dim: int | None = None) -> int:
        """Width of the encodings: ``final_dim``, else ``r_reps * 2**k_sim * (d_proj or input_dim)``."""
        if self.final_dim is not None:
            return self.final_dim
        return self._block_dim(input_dim)

    @property
    def dim(self) -> int:
        """Width of the encodings (needs ``d_proj`` or a first encoding when ``d_proj=None``)."""
        return self.fde_dim(self.input_dim_)

    def _block_dim(self, input_dim: int | None) -> int:
        width = self.d_proj if self.d_proj is not None else input_dim
        if width is None:
            raise InvalidInputError(
                "Muvera.dim: the width is unknown until the first encoding when d_proj=None. "
                "Encode something first or set d_proj."
            )
        return self.r_reps * self.partitions * width

    def _check_size(self, input_dim: int | None) -> None:
        raw = self._block_dim(input_dim)
        params = f"r_reps={self.r_reps} x 2**k_sim={self.partitions} x d_proj={self.d_proj or input_dim}"
        if raw > DIM_MAX:
            raise InvalidInputError(
                f"Muvera: the encoding dimension ({params}) must be at most {DIM_MAX:,}, got {raw:,}. "
                "Lower k_sim, r_reps or d_proj (the defaults give 10,240)."
            )
        if raw > DIM_WARN or (self.final_dim or 0) > DIM_WARN:
            warnings.warn(
                f"Muvera: the encoding dimension is {raw:,} ({params}, final_dim={self.final_dim}), above "
                f"{DIM_WARN:,}: every document costs {4 * max(raw, self.final_dim or 0) / 2**10:,.0f} KiB while encoding. "
                "Lower k_sim, r_reps or d_proj, or set final_dim.",
                UserWarning,
                stacklevel=3,
            )

    def get_params(self) -> dict:
        """The constructor arguments (JSON-serialisable): ``Muvera(**m.get_params())`` encodes identically."""
        return {"k_sim": self.k_sim, "d_proj": self.d_proj, "r_reps": self.r_reps, "seed": self.seed,
                "final_dim": self.final_dim, "fill_empty_partitions": self.fill_empty_partitions}

    def __repr__(self) -> str:
        return "Muvera(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    # ------------------------------------------------------------------ encoding
    def encode_queries(self, queries: MultiVectors) -> np.ndarray:
        """Query FDEs ``F_q``: float32 ``[n, dim]``; blocks are sums, empty partitions stay zero."""
        return self._encode(queries, "encode_queries", "queries", average=False)

    def encode_documents(self, documents: MultiVectors) -> np.ndarray:
        """Document FDEs ``F_doc``: float32 ``[n, dim]``; blocks are centroids, empty ones filled if asked."""
        return self._encode(documents, "encode_documents", "documents", average=True)

    def _encode(self, mv: MultiVectors, method: str, param: str, *, average: bool) -> np.ndarray:
        owner = f"Muvera.{method}"
        check_multivectors(mv, owner, param, dim=self.input_dim_, role=param)
        d = mv.dim
        if self.d_proj is None and self.input_dim_ is None:
            self._check_size(d)
        draw = self._draw(d)
        self.input_dim_ = d
        width = self.d_proj if self.d_proj is not None else d
        per_token = self.r_reps * max(width, self.partitions if average and self.fill_empty_partitions else 1)
        out = np.empty((len(mv), self.fde_dim(d)), dtype=np.float32)
        offsets = mv.offsets
        for start, stop in item_blocks(offsets, _CHUNK_CELLS // per_token):
            tokens = np.asarray(mv.vectors[offsets[start] : offsets[stop]], dtype=np.float32)
            blocks = self._blocks(tokens, offsets[start : stop + 1] - offsets[start], draw, width, average)
            out[start:stop] = blocks if draw.sketch is None else np.asarray(blocks @ draw.sketch)
        return out

    def _blocks(self, x: np.ndarray, offsets: np.ndarray, draw: _Draw, width: int, average: bool) -> np.ndarray:
        """The concatenated blocks ``[n, r_reps * B * width]`` for tokens ``x [N, d]`` of ``n`` items."""
        n, big_n, reps, parts = len(offsets) - 1, len(x), self.r_reps, self.partitions
        lengths = np.diff(offsets)
        item = np.repeat(np.arange(n), lengths)
        if self.k_sim:
            bits = (x @ draw.hyperplanes > 0).reshape(big_n, reps, self.k_sim)
            part = bits.astype(np.int64) @ (1 << np.arange(self.k_sim, dtype=np.int64))  # [N, reps]
        else:
            part = np.zeros((big_n, reps), dtype=np.int64)
        if draw.signs is not None:
            proj = (x @ draw.signs).reshape(big_n, reps, width)
        else:
            proj = np.broadcast_to(x[:, None, :], (big_n, reps, width))
        # cell (item, rep, partition) -> row of the [n * reps * B, width] block table
        cell = ((item[:, None] * reps + np.arange(reps)[None, :]) * parts + part).ravel()
        table = sp.csr_matrix(
            (np.ones(cell.size, dtype=np.float32), (cell, np.arange(cell.size))), shape=(n * reps * parts, cell.size)
        ) @ proj.reshape(-1, width)
        table = np.asarray(table, dtype=np.float32)
        if average:
            counts = np.bincount(cell, minlength=n * reps * parts)
            table /= np.maximum(counts, 1)[:, None]
            if self.fill_empty_partitions and (counts == 0).any():
                self._fill(table, counts, part, proj, offsets)
        return table.reshape(n, reps * parts * width)

    def _fill(self, table: np.ndarray, counts: np.ndarray, part: np.ndarray, proj: np.ndarray,
              offsets: np.ndarray) -> None:
        """Set each empty document block to the projected token nearest in Hamming distance (in place)."""
        reps, parts, big_n = self.r_reps, self.partitions, len(part)
        popcount = np.array([bin(v).count("1") for v in range(parts)], dtype=np.int64)
        empty = counts.reshape(-1, reps, parts) == 0  # [n, reps, B]
        starts = offsets[:-1]
        token = np.arange(big_n, dtype=np.int64)
        for r in np.flatnonzero(empty.any(axis=(0, 2))):
            dist = popcount[part[:, r, None] ^ np.arange(parts)[None, :]]  # [N, B]
            best = np.minimum.reduceat(dist * big_n + token[:, None], starts, axis=0) % big_n  # [n, B]
            items, ks = np.nonzero(empty[:, r, :])
            table[(items * reps + r) * parts + ks] = proj[best[items, ks], r]

    def _draw(self, d: int) -> _Draw:
        if d not in self._draws:
            rng = np.random.default_rng([self.seed, d])
            hyperplanes = rng.standard_normal((d, self.r_reps * self.k_sim)).astype(np.float32)
            signs = None
            if self.d_proj is not None:
                signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(d, self.r_reps * self.d_proj))
                signs /= np.float32(np.sqrt(self.d_proj))
            sketch = None
            if self.final_dim is not None:
                raw = self._block_dim(d)
                rows = np.arange(raw)
                sketch = sp.csr_matrix(
                    (rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=raw),
                     (rows, rng.integers(0, self.final_dim, size=raw))),
                    shape=(raw, self.final_dim),
                )
            self._draws[d] = _Draw(hyperplanes, signs, sketch)
        return self._draws[d]

