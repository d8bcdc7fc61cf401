"""Multi-vector search: MUVERA candidates from single-vector search, then an exact Chamfer rerank.

The retrieval pipeline of Dhulipala et al. 2024 (MUVERA, §3 "Evaluation"/end-to-end): every document's
token vectors are stored (float16 or float32, ragged: ``vectors [N, d]`` + ``offsets [n + 1]``) and
encoded once into a fixed dimensional encoding (:class:`~embedlab.index.multivector.fde.Muvera`); a query's
FDE retrieves ``candidates`` documents by inner product, and those are rescored with the exact Chamfer /
MaxSim score (:func:`~embedlab.index.multivector.maxsim.maxsim_rerank`). Only the candidates' token vectors
are read, so the token store may be memory-mapped.

:class:`MuveraPipeline` is that pipeline, and the one MUVERA stack: :class:`MuveraIndex` (standalone, its own
faiss flat scan or HNSW over FDEs, optionally float16/int8 codes) and the collection layer
(:class:`~embedlab.index.multivector.layer.MuveraLayer`: the collection's index, filters and durable files)
both encode, size the candidate pool and rerank through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.files import replacing
from embedlab.index.multivector.fde import Muvera
from embedlab.index.multivector.maxsim import check_allowed_mask, check_multivectors, maxsim_rerank, maxsim_search
from embedlab.index.search.faiss_backends import hnsw_index
from embedlab.params import check_choice, check_int
from embedlab.selector import BitmapSelector
from embedlab.topk import topk_blocks
from embedlab.types import Hits, MultiVectors, ProgressCallback, report_progress

FORMAT_VERSION = 1
_INDEXES = ("flat", "hnsw")
_CODECS = {"float32": None, "float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}
TOKEN_DTYPES = {"float16": np.float16, "float32": np.float32}
_ADD_BATCH = 4096  # documents encoded per step of add()
_SCAN_ROWS = 8192  # float16 FDE rows widened to float32 per step of a flat scan


class MuveraPipeline:
    """FDE encoding, candidate pool and exact rerank: the MUVERA stack shared by :class:`MuveraIndex` and the
    collection layer (settings checked by their owners).

    ``muvera`` the FDE settings; ``candidates`` the FDE hits reranked per query (at least ``k``); ``dtype`` of the
    stored token vectors (``"float16"`` or ``"float32"``): documents are cast to it first and their FDEs computed
    from the stored tokens, so the candidate search and the rerank see the same vectors.
    """

    def __init__(self, muvera: Muvera, candidates: int, dtype: str) -> None:
        self.muvera, self.candidates, self.dtype = muvera, int(candidates), dtype
        self.token_dtype = TOKEN_DTYPES[dtype]

    def fde_dim(self, dim: int) -> int:
        return self.muvera.fde_dim(dim)

    def encode_documents(self, documents: MultiVectors) -> tuple[MultiVectors, np.ndarray]:
        """``(documents as stored, FDEs float32 [n, fde_dim])``; the stored token vectors are of :attr:`dtype`."""
        stored = MultiVectors(np.asarray(documents.vectors, dtype=self.token_dtype), documents.offsets)
        return stored, self.muvera.encode_documents(stored)

    def encode_queries(self, queries: MultiVectors) -> np.ndarray:
        """Query FDEs float32 ``[nq, fde_dim]``."""
        return self.muvera.encode_queries(queries)

    def pool(self, k: int, candidates: int | None = None) -> int:
        """FDE candidates to fetch for ``k`` results: ``max(candidates, k)``."""
        return max(self.candidates if candidates is None else candidates, k)

    def rerank(self, queries: MultiVectors, documents: MultiVectors, candidates: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact Chamfer top-``k`` among ``candidates`` (int ``[nq, c]``, ``-1`` pads): ``(scores, positions)``."""
        if len(documents) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        return maxsim_rerank(queries, documents, candidates, k)


class _HalfFlat:
    """Exact inner-product scan over float16 FDE rows: half the memory of float32, BLAS speed.

    (faiss's float16 scalar quantiser scans without BLAS, ~10x slower for batches of queries.)
    """

    is_trained = True

    def __init__(self, dim: int, rows: np.ndarray | None = None) -> None:
        self.dim = dim
        self._chunks = [rows] if rows is not None else []

    @property
    def ntotal(self) -> int:
        return sum(len(c) for c in self._chunks)

    @property
    def rows(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim), np.float16)]
        return self._chunks[0]

    def train(self, x: np.ndarray) -> None:
        pass

    def add(self, x: np.ndarray) -> None:
        self._chunks.append(np.asarray(x, dtype=np.float16))

    def sa_code_size(self) -> int:
        return 2 * self.dim

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
        rows = self.rows

        def blocks():
            for start in range(0, len(rows), _SCAN_ROWS):
                s = queries @ np.asarray(rows[start : start + _SCAN_ROWS], dtype=np.float32).T
                if mask is not None:
                    s[:, ~mask[start : start + s.shape[1]]] = -np.inf  # padding: filtered-out rows never come back
                yield s, start

        return topk_blocks(blocks(), len(queries), k)[1]


class MuveraIndex:
    """Documents as token-vector sets, searched by MUVERA FDE candidates + exact MaxSim rerank.

    ``dim`` is the token-vector width; ``muvera`` the FDE settings (default ``Muvera()``: 10,240 dims);
    ``index`` ``"flat"`` (exact inner-product scan over FDEs) or ``"hnsw"`` (``M``, ``ef_construction``,
    ``ef_search``); ``fde_codec`` ``"float32"``, ``"float16"`` (flat: a BLAS scan
    over float16 rows; HNSW: faiss's float16 scalar quantiser) or ``"int8"`` (faiss's 8-bit scalar
    quantiser, trained on the first batch added); ``dtype`` of the stored token vectors; ``candidates`` how many
    FDE hits are reranked per query. Positions ``0..n-1`` follow the order of :meth:`add`.
    """

    def __init__(
        self,
        dim: int,
        *,
        muvera: Muvera | None = None,
        index: str = "flat",
        fde_codec: str = "float32",
        dtype: str = "float16",
        candidates: int = 100,
        M: int = 32,
        ef_construction: int = 128,
        ef_search: int = 128,
    ) -> None:
        owner = "MuveraIndex"
        for name, value in (("dim", dim), ("candidates", candidates), ("M", M),
                            ("ef_construction", ef_construction), ("ef_search", ef_search)):
            check_int(value, owner, name)
        check_choice(index, _INDEXES, owner, "index")
        check_choice(fde_codec, _CODECS, owner, "fde_codec")
        check_choice(dtype, TOKEN_DTYPES, owner, "dtype")
        if muvera is not None and not isinstance(muvera, Muvera):
            raise InvalidInputError(f"{owner}: muvera must be a Muvera or None, got {type(muvera).__name__}.")
        self.dim, self.index_kind, self.fde_codec = int(dim), index, fde_codec
        self.M, self.ef_construction, self.ef_search = int(M), int(ef_construction), int(ef_search)
        self.pipeline = MuveraPipeline(muvera if muvera is not None else Muvera(), candidates, dtype)
        self._fde = self._new_fde_index(self.pipeline.fde_dim(self.dim))
        self._chunks: list[np.ndarray] = []  # token vectors, appended per add()
        self._offsets = np.zeros(1, dtype=np.int64)
        self._documents: MultiVectors | None = None

    # ------------------------------------------------------------------ construction helpers
    def _new_fde_index(self, fde_dim: int):
        qtype = _CODECS[self.fde_codec]
        if self.index_kind == "hnsw":
            return hnsw_index(fde_dim, "ip", M=self.M, ef_construction=self.ef_construction, ef_search=self.ef_search,
                              sq_type=qtype)
        if qtype is None:
            return faiss.IndexFlatIP(fde_dim)
        if self.fde_codec == "float16":
            return _HalfFlat(fde_dim)
        return faiss.IndexScalarQuantizer(fde_dim, qtype, faiss.METRIC_INNER_PRODUCT)

    @property
    def muvera(self) -> Muvera:
        return self.pipeline.muvera

    @property
    def candidates(self) -> int:
        return self.pipeline.candidates

    @property
    def dtype(self) -> str:
        return self.pipeline.dtype

    def get_params(self) -> dict:
        return {"dim": self.dim, "muvera": self.muvera.get_params(), "index": self.index_kind,
                "fde_codec": self.fde_codec, "dtype": self.dtype, "candidates": self.candidates, "M": self.M,
                "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def documents(self) -> MultiVectors:
        """Every stored document's token vectors (memory-mapped after :meth:`load`)."""
        if self._documents is None:
            vectors = (self._chunks[0] if len(self._chunks) == 1 else
                       np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim), self.pipeline.token_dtype))
            self._chunks = [vectors]
            self._documents = MultiVectors(vectors, self._offsets)
        return self._documents

    # ------------------------------------------------------------------ writing
    def add(self, documents: MultiVectors, *, progress: ProgressCallback | None = None) -> np.ndarray:
        """Store ``documents`` (token vectors ``[N, dim]``, every item non-empty) and index their FDEs.

        Returns their int64 positions. A rejected batch changes nothing; ``progress(done, total)``
        may cancel between steps (the documents added so far stay).
        """
        check_multivectors(documents, "MuveraIndex.add", "documents", dim=self.dim)
        if self.fde_codec == "int8" and not self._fde.is_trained and len(documents) < 2:
            raise InvalidInputError(
                "MuveraIndex.add: the first batch must hold at least 2 documents when fde_codec='int8' "
                f"(the quantiser is trained on it), got {len(documents)}. Add a larger first batch."
            )
        first = len(self)
        for start in range(0, len(documents), _ADD_BATCH):
            stop = min(start + _ADD_BATCH, len(documents))
            off = documents.offsets[start : stop + 1]
            stored, fde = self.pipeline.encode_documents(MultiVectors(documents.vectors[off[0] : off[-1]], off - off[0]))
            if not self._fde.is_trained:
                self._fde.train(fde)
            self._fde.add(fde)
            self._chunks.append(stored.vectors)
            self._offsets = np.concatenate([self._offsets, self._offsets[-1] + stored.offsets[1:]])
            self._documents = None
            report_progress(progress, stop, len(documents))
        return np.arange(first, len(self), dtype=np.int64)

    # ------------------------------------------------------------------ searching
    def search(
        self,
        queries: MultiVectors,
        k: int = 10,
        *,
        candidates: int | None = None,
        allowed: np.ndarray | None = None,
        ef_search: int | None = None,
    ) -> Hits:
        """Top-``k`` documents per query by exact Chamfer score among the FDE search's candidates.

        ``candidates`` (default: the index's) FDE hits are reranked; ``allowed`` (bool ``[n]``)
        restricts results to those positions: when no more than ``candidates`` are allowed they are
        all scored exactly (strategy ``"exact"``), else the FDE search skips the others inside faiss
        (strategy ``"muvera"``). Returns :class:`Hits` with positions and Chamfer scores.
        """
        k = check_int(k, "MuveraIndex.search", "k")
        c = check_int(self.candidates if candidates is None else candidates, "MuveraIndex.search", "candidates")
        check_int(ef_search, "MuveraIndex.search", "ef_search", allow_none=True)
        check_multivectors(queries, "MuveraIndex.search", "queries", dim=self.dim, role="queries")
        mask = check_allowed_mask(allowed, len(self), "MuveraIndex.search")
        n_allowed = len(self) if mask is None else int(mask.sum())
        if n_allowed == 0:
            empty = (np.full((len(queries), k), -1, dtype=np.int64), np.full((len(queries), k), -np.inf, np.float32))
            return Hits(*empty, strategy=("empty",) * len(queries))
        pool = self.pipeline.pool(k, c)
        if n_allowed <= pool:
            scores, positions = maxsim_search(queries, self.documents, k, allowed=mask)
            return Hits(positions, scores, strategy=("exact",) * len(queries))
        cand = self._fde_search(self.pipeline.encode_queries(queries), pool, mask, ef_search)
        scores, positions = self.pipeline.rerank(queries, self.documents, cand, k)
        return Hits(positions, scores, strategy=("muvera",) * len(queries))

    def candidates_for(self, queries: MultiVectors, candidates: int, *, ef_search: int | None = None) -> np.ndarray:
        """The FDE search's candidate positions int64 ``[nq, candidates]`` (best first, ``-1`` pads), no rerank."""
        check_int(candidates, "MuveraIndex.candidates_for", "candidates")
        check_multivectors(queries, "MuveraIndex.candidates_for", "queries", dim=self.dim, role="queries")
        return self._fde_search(self.pipeline.encode_queries(queries), min(candidates, max(len(self), 1)), None, ef_search)

    def _fde_search(self, q_fde: np.ndarray, c: int, mask: np.ndarray | None, ef_search: int | None) -> np.ndarray:
        if isinstance(self._fde, _HalfFlat):
            return self._fde.search(q_fde, c, mask)
        allowed = BitmapSelector(mask) if mask is not None else None  # alive until the search returns
        if self.index_kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search or self.ef_search, c),
                                                sel=allowed.selector if allowed is not None else None)
        else:
            params = allowed.params() if allowed is not None else None
        _, labels = self._fde.search(np.ascontiguousarray(q_fde), c, params=params)
        return labels.astype(np.int64, copy=False)

    def search_exact(self, queries: MultiVectors, k: int = 10, *, allowed: np.ndarray | None = None) -> Hits:
        """Brute-force top-``k`` by exact Chamfer / MaxSim over every (allowed) document: the ground truth."""
        check_multivectors(queries, "MuveraIndex.search_exact", "queries", dim=self.dim, role="queries")
        mask = check_allowed_mask(allowed, len(self), "MuveraIndex.search_exact")
        if len(self) == 0:
            k = check_int(k, "MuveraIndex.search_exact", "k")
            return Hits(np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), -np.inf, np.float32))
        scores, positions = maxsim_search(queries, self.documents, k, allowed=mask)
        return Hits(positions, scores, strategy=("exact",) * len(queries))

    # ------------------------------------------------------------------ sizes
    def bytes_per_document(self) -> dict[str, float]:
        """Average storage per document: ``fde`` (codes and graph links), ``tokens`` (vectors + offset), ``total``."""
        n = max(len(self), 1)
        index = self._fde
        if isinstance(index, faiss.IndexHNSW):
            fde = index.storage.sa_code_size() + index.hnsw.neighbors.size() * 4 / n + index.hnsw.offsets.size() * 8 / n
        else:
            fde = index.sa_code_size()
        tokens = (self._offsets[-1] * self.dim * np.dtype(self.pipeline.token_dtype).itemsize + 8 * len(self._offsets)) / n
        return {"fde": float(fde), "tokens": float(tokens), "total": float(fde + tokens)}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write a folder: ``manifest.json``, ``tokens.npy``, ``offsets.npy``, ``fde.faiss`` or ``fde.npy`` (each written
        aside, fsynced, then renamed; the manifest last)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        docs = self.documents
        _save_npy(path / "tokens.npy", docs.vectors)
        _save_npy(path / "offsets.npy", docs.offsets)
        if isinstance(self._fde, _HalfFlat):
            _save_npy(path / "fde.npy", self._fde.rows)
        else:
            with replacing(path / "fde.faiss") as tmp:
                faiss.write_index(self._fde, str(tmp))
        manifest = {"format_version": FORMAT_VERSION, "kind": "muvera", "n": len(self), **self.get_params()}
        with replacing(path / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> "MuveraIndex":
        """Open a folder written by :meth:`save`; token vectors (and float16 flat FDEs) are memory-mapped unless ``mmap=False``."""
        path = Path(path)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"MuveraIndex.load: {path / 'manifest.json'} must be a readable JSON manifest, got {exc}.") from None
        if manifest.get("format_version") != FORMAT_VERSION or manifest.get("kind") != "muvera":
            raise DataFormatError(
                f"MuveraIndex.load: {path} must hold a muvera index of format_version {FORMAT_VERSION}, got "
                f"kind={manifest.get('kind')!r}, format_version={manifest.get('format_version')!r}."
            )
        params = {k: manifest[k] for k in ("index", "fde_codec", "dtype", "candidates", "M", "ef_construction", "ef_search")}
        self = cls(manifest["dim"], muvera=Muvera(**manifest["muvera"]), **params)
        vectors = np.load(path / "tokens.npy", mmap_mode="r" if mmap else None)
        offsets = np.load(path / "offsets.npy")
        if isinstance(self._fde, _HalfFlat):
            self._fde = _HalfFlat(self._fde.dim, np.load(path / "fde.npy", mmap_mode="r" if mmap else None))
        else:
            self._fde = faiss.read_index(str(path / "fde.faiss"))
        if len(offsets) - 1 != manifest["n"] or self._fde.ntotal != manifest["n"] or offsets[-1] != len(vectors):
            raise DataFormatError(
                f"MuveraIndex.load: {path} must hold {manifest['n']} documents in every file, got offsets for "
                f"{len(offsets) - 1}, {self._fde.ntotal} FDEs and {len(vectors)} token vectors for {offsets[-1]}."
            )
        self._chunks, self._offsets = [vectors], offsets
        return self


def _save_npy(path: Path, array: np.ndarray) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as fh:  # a file handle: np.save would append ".npy" to the name
        np.save(fh, np.ascontiguousarray(array))
