"""Multi-vector search: MUVERA candidates from single-vector search, then an exact Chamfer rerank.

The retrieval pipeline of Dhulipala et al. 2024 (MUVERA, §3 "Evaluation"/end-to-end): every document's
token vectors are stored (float16 or float32, ragged: ``vectors [N, d]`` + ``offsets [n + 1]``) and
encoded once into a fixed dimensional encoding (:class:`~embedlab.index.muvera.Muvera`); a query's
FDE retrieves ``candidates`` documents by inner product (faiss flat scan or HNSW, optionally over
float16/int8 codes), and those are rescored with the exact Chamfer / MaxSim score
(:func:`~embedlab.index.multivector.maxsim_rerank`). Only the candidates' token vectors are read, so
the token store is memory-mapped when the index is loaded from disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.index.multivector import (_check_k, _topk, check_allowed_mask, check_multivectors, maxsim_rerank,
                                        maxsim_search)
from embedlab.index.muvera import Muvera
from embedlab.types import Hits, MultiVectors, ProgressCallback, report_progress

FORMAT_VERSION = 1
_INDEXES = ("flat", "hnsw")
_CODECS = {"float32": None, "float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}
_DTYPES = {"float16": np.float16, "float32": np.float32}
_ADD_BATCH = 4096  # documents encoded per step of add()
_SCAN_ROWS = 8192  # float16 FDE rows widened to float32 per step of a flat scan


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
        best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best_p = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(rows), _SCAN_ROWS):
            block = np.asarray(rows[start : start + _SCAN_ROWS], dtype=np.float32)
            s = queries @ block.T
            if mask is not None:
                s[:, ~mask[start : start + len(block)]] = -np.inf
            pos = np.broadcast_to(np.arange(start, start + len(block)), s.shape)
            best_s, best_p = _topk(np.concatenate([best_s, s], 1), np.concatenate([best_p, pos], 1), k)
        best_p[np.isneginf(best_s)] = -1  # filtered-out rows never come back
        return best_p


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
            _positive(value, owner, name)
        _choice(index, _INDEXES, owner, "index")
        _choice(fde_codec, tuple(_CODECS), owner, "fde_codec")
        _choice(dtype, tuple(_DTYPES), owner, "dtype")
        if muvera is not None and not isinstance(muvera, Muvera):
            raise InvalidInputError(f"{owner}: muvera must be a Muvera or None, got {type(muvera).__name__}.")
        self.dim, self.index_kind, self.fde_codec, self.dtype = int(dim), index, fde_codec, dtype
        self.candidates, self.M, self.ef_construction, self.ef_search = int(candidates), int(M), int(ef_construction), int(ef_search)
        self.muvera = muvera if muvera is not None else Muvera()
        self._fde = self._new_fde_index(self.muvera.fde_dim(self.dim))
        self._chunks: list[np.ndarray] = []  # token vectors, appended per add()
        self._offsets = np.zeros(1, dtype=np.int64)
        self._documents: MultiVectors | None = None

    # ------------------------------------------------------------------ construction helpers
    def _new_fde_index(self, fde_dim: int):
        qtype = _CODECS[self.fde_codec]
        if self.index_kind == "hnsw":
            index = (faiss.IndexHNSWFlat(fde_dim, self.M, faiss.METRIC_INNER_PRODUCT) if qtype is None
                     else faiss.IndexHNSWSQ(fde_dim, qtype, self.M, faiss.METRIC_INNER_PRODUCT))
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            return index
        if qtype is None:
            return faiss.IndexFlatIP(fde_dim)
        if self.fde_codec == "float16":
            return _HalfFlat(fde_dim)
        return faiss.IndexScalarQuantizer(fde_dim, qtype, faiss.METRIC_INNER_PRODUCT)

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
                       np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim), _DTYPES[self.dtype]))
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
            tokens = np.asarray(documents.vectors[off[0] : off[-1]], dtype=_DTYPES[self.dtype])
            batch = MultiVectors(tokens, off - off[0])
            fde = self.muvera.encode_documents(batch)
            if not self._fde.is_trained:
                self._fde.train(fde)
            self._fde.add(fde)
            self._chunks.append(tokens)
            self._offsets = np.concatenate([self._offsets, self._offsets[-1] + off[1:] - off[0]])
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
        k = _check_k(k, "MuveraIndex.search")
        c = self.candidates if candidates is None else candidates
        _positive(c, "MuveraIndex.search", "candidates")
        if ef_search is not None:
            _positive(ef_search, "MuveraIndex.search", "ef_search")
        check_multivectors(queries, "MuveraIndex.search", "queries", dim=self.dim, role="queries")
        mask = check_allowed_mask(allowed, len(self), "MuveraIndex.search")
        n_allowed = len(self) if mask is None else int(mask.sum())
        if n_allowed == 0:
            empty = (np.full((len(queries), k), -1, dtype=np.int64), np.full((len(queries), k), -np.inf, np.float32))
            return Hits(*empty, strategy=("empty",) * len(queries))
        if n_allowed <= max(c, k):
            scores, positions = maxsim_search(queries, self.documents, k, allowed=mask)
            return Hits(positions, scores, strategy=("exact",) * len(queries))
        q_fde = self.muvera.encode_queries(queries)
        cand = self._fde_search(q_fde, min(max(c, k), n_allowed), mask, ef_search)
        scores, positions = maxsim_rerank(queries, self.documents, cand, k)
        return Hits(positions, scores, strategy=("muvera",) * len(queries))

    def candidates_for(self, queries: MultiVectors, candidates: int, *, ef_search: int | None = None) -> np.ndarray:
        """The FDE search's candidate positions int64 ``[nq, candidates]`` (best first, ``-1`` pads), no rerank."""
        _positive(candidates, "MuveraIndex.candidates_for", "candidates")
        check_multivectors(queries, "MuveraIndex.candidates_for", "queries", dim=self.dim, role="queries")
        return self._fde_search(self.muvera.encode_queries(queries), min(candidates, max(len(self), 1)), None, ef_search)

    def _fde_search(self, q_fde: np.ndarray, c: int, mask: np.ndarray | None, ef_search: int | None) -> np.ndarray:
        if isinstance(self._fde, _HalfFlat):
            return self._fde.search(q_fde, c, mask)
        bits = selector = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")  # faiss keeps a raw pointer: keep `bits` alive
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        if self.index_kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search or self.ef_search, c), sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        _, labels = self._fde.search(np.ascontiguousarray(q_fde), c, params=params)
        del bits
        return labels.astype(np.int64, copy=False)

    def search_exact(self, queries: MultiVectors, k: int = 10, *, allowed: np.ndarray | None = None) -> Hits:
        """Brute-force top-``k`` by exact Chamfer / MaxSim over every (allowed) document: the ground truth."""
        check_multivectors(queries, "MuveraIndex.search_exact", "queries", dim=self.dim, role="queries")
        mask = check_allowed_mask(allowed, len(self), "MuveraIndex.search_exact")
        if len(self) == 0:
            k = _check_k(k, "MuveraIndex.search_exact")
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
        tokens = (self._offsets[-1] * self.dim * np.dtype(_DTYPES[self.dtype]).itemsize + 8 * len(self._offsets)) / n
        return {"fde": float(fde), "tokens": float(tokens), "total": float(fde + tokens)}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write a folder: ``manifest.json``, ``tokens.npy``, ``offsets.npy``, ``fde.faiss`` or ``fde.npy`` (each written
        aside, then renamed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        docs = self.documents
        _atomic(path / "tokens.npy", lambda p: np.save(p, np.ascontiguousarray(docs.vectors)))
        _atomic(path / "offsets.npy", lambda p: np.save(p, docs.offsets))
        if isinstance(self._fde, _HalfFlat):
            _atomic(path / "fde.npy", lambda p: np.save(p, self._fde.rows))
        else:
            _atomic(path / "fde.faiss", lambda p: faiss.write_index(self._fde, str(p)))
        manifest = {"format_version": FORMAT_VERSION, "kind": "muvera", "n": len(self), **self.get_params()}
        _atomic(path / "manifest.json", lambda p: Path(p).write_text(json.dumps(manifest, indent=2)))

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


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


def _positive(value, owner: str, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{owner}: {name} must be a positive int, got {value!r}.")


def _choice(value, choices: tuple, owner: str, name: str) -> None:
    if value not in choices:
        raise InvalidInputError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}.")
