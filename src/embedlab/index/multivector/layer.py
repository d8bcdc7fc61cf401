"""Multi-vector collections: the :class:`MuveraLayer` behind ``Collection.create(..., multivector=True)``.

The collection indexes one MUVERA fixed dimensional encoding per item (Dhulipala et al. 2024; see
:mod:`embedlab.index.multivector.fde`) with its usual flat / HNSW / IVF index, filters and deletes; this layer
keeps the items' token vectors beside it and re-ranks the filtered FDE candidates by exact Chamfer / MaxSim.
Encoding, the candidate pool and the rerank are those of the standalone index
(:class:`~embedlab.index.multivector.index.MuveraPipeline`); only the storage and the candidate search differ.

Files per generation ``g`` (raw little-endian, memory-mapped read-only):

* ``tokens-<g>.f16`` or ``tokens-<g>.f32``: token vectors ``[N, dim]``, items one after another;
* ``token-ends-<g>.i64``: for row ``r`` the end of its tokens (the start is the previous row's end).

Appends write the tokens and then the ends (each fsynced) past the committed rows, before the collection's
SQLite commit; :meth:`MuveraLayer.open` reads only the ends of committed rows, so a crash mid-batch
leaves bytes that the next append overwrites. A new generation's files (creation, compaction) are written
aside and renamed into place (:func:`embedlab.files.replacing`); an old generation's are deleted by the collection
once no reader holds that generation's lease (:mod:`embedlab.index.collection.leases`).
The first rerank after an open checks the files (token ends within the tokens file, tokens finite; each token
once per process) and refuses damaged ones with a ``DataFormatError``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.files import replacing
from embedlab.index.multivector.fde import Muvera
from embedlab.index.multivector.index import TOKEN_DTYPES, MuveraPipeline
from embedlab.index.multivector.maxsim import check_multivectors, token_rows
from embedlab.params import check_choice, check_int
from embedlab.types import MultiVectors

_SUFFIXES = {"float16": "f16", "float32": "f32"}
_MUVERA_KEYS = ("k_sim", "d_proj", "r_reps", "seed", "final_dim", "fill_empty_partitions")
_OWN_KEYS = ("candidates", "dtype")


class MuveraLayer:
    """Token vectors + MUVERA FDEs for a collection (see the module docstring).

    Options (``multivector={...}``): the :class:`Muvera` settings (``k_sim``, ``d_proj``, ``r_reps``,
    ``seed``, ``final_dim``, ``fill_empty_partitions``), ``candidates`` (FDE hits re-ranked per query,
    default 100, at least ``k``) and ``dtype`` of the stored token vectors (``"float16"`` or ``"float32"``).
    """

    name = "multivector"

    def __init__(self, folder: Path, config: dict, dim: int) -> None:
        self.folder, self.dim = Path(folder), int(dim)
        self._config = {k: v for k, v in config.items() if k != "name"}
        self.pipeline = MuveraPipeline(Muvera(**self._config["muvera"]), self._config["candidates"], self._config["dtype"])
        self._dtype, self._suffix = self.pipeline.token_dtype, _SUFFIXES[self.pipeline.dtype]
        self._generation = 0
        self._n = 0
        self._documents: MultiVectors | None = None
        self._verified = (-1, 0)  # (generation, tokens) already checked finite in this process
        self._encoder_loader = None

    # ------------------------------------------------------------------ creation / loading
    @classmethod
    def create(cls, folder: Path, dim: int, metric: str, options: Any, owner: str) -> dict:
        if metric != "ip":
            raise InvalidInputError(
                f"{owner}: metric must be 'ip' for a multivector collection (FDE inner products approximate the "
                f"Chamfer score), got {metric!r}. Pass metric='ip'; Encoder.encode_tokens already unit-normalises "
                "token vectors.")
        if not isinstance(options, dict):
            raise InvalidInputError(f"{owner}: multivector must be True or a dict of options, got {type(options).__name__}.")
        unknown = sorted(set(options) - set(_MUVERA_KEYS) - set(_OWN_KEYS))
        if unknown:
            raise InvalidInputError(
                f"{owner}: multivector options must be among {sorted(_MUVERA_KEYS + _OWN_KEYS)}, got unknown {unknown}.")
        candidates = check_int(options.get("candidates", 100), owner, "multivector candidates")
        dtype = check_choice(options.get("dtype", "float16"), TOKEN_DTYPES, owner, "multivector dtype")
        muvera = Muvera(**{k: options[k] for k in _MUVERA_KEYS if k in options})
        config = {"muvera": muvera.get_params(), "candidates": candidates, "dtype": dtype,
                  "index_dim": muvera.fde_dim(int(dim))}
        layer = cls(folder, config, dim)
        layer._write_files(0, MultiVectors(np.zeros((0, dim), layer._dtype), np.zeros(1, np.int64)))
        return config

    @classmethod
    def load(cls, folder: Path, config: dict, dim: int, metric: str) -> "MuveraLayer":
        return cls(folder, config, dim)

    def config(self) -> dict:
        return dict(self._config)

    def bind_encoder(self, loader) -> None:
        """``loader()`` returns the collection's encoder; it turns ``texts=`` into token vectors."""
        self._encoder_loader = loader

    # ------------------------------------------------------------------ files
    def _paths(self, generation: int) -> tuple[Path, Path]:
        return (self.folder / f"tokens-{generation}.{self._suffix}", self.folder / f"token-ends-{generation}.i64")

    def _write_files(self, generation: int, docs: MultiVectors) -> None:
        tokens, ends = self._paths(generation)
        for path, array in ((tokens, docs.vectors), (ends, docs.offsets[1:])):
            with replacing(path) as tmp:
                np.ascontiguousarray(array, dtype=self._dtype if path == tokens else np.int64).tofile(tmp)

    @property
    def documents(self) -> MultiVectors:
        """Token vectors of rows ``0 .. n_rows - 1`` (memory-mapped)."""
        if self._documents is None:
            tokens, ends_path = self._paths(self._generation)
            ends = np.fromfile(ends_path, dtype=np.int64, count=self._n) if self._n else np.zeros(0, np.int64)
            offsets = np.concatenate([[0], ends]).astype(np.int64)
            total = int(offsets[-1])
            size = tokens.stat().st_size if tokens.exists() else 0
            if len(ends) < self._n or (np.diff(offsets) < 0).any() or total * self.dim * np.dtype(self._dtype).itemsize > size:
                raise DataFormatError(
                    f"Collection.open: {ends_path.name} must hold {self._n} non-decreasing token ends within "
                    f"{tokens.name} ({size} bytes), got {len(ends)} ends up to {total}. The files are damaged: restore "
                    "the folder from a backup.")
            vectors = (np.memmap(tokens, dtype=self._dtype, mode="r", shape=(total, self.dim)) if total
                       else np.zeros((0, self.dim), self._dtype))
            start = self._verified[1] if self._verified[0] == self._generation else 0
            for s in range(start, total, 262144):  # tokens scanned once per process, like the collection's rows
                block = vectors[s : min(total, s + 262144)]
                if not np.isfinite(block.min()) or not np.isfinite(block.max()):
                    raise DataFormatError(
                        f"Collection.open: {tokens.name} must hold finite token vectors, got NaN or inf in token "
                        f"{s + int(np.flatnonzero(~np.isfinite(np.asarray(block)).all(axis=1))[0])}. The file is "
                        "damaged: restore the folder from a backup.")
            self._verified = (self._generation, max(start, total))
            self._documents = MultiVectors(vectors, offsets)
        return self._documents

    # ------------------------------------------------------------------ collection hooks
    def _tokens(self, value: Any, texts: list[str] | None, n: int, owner: str, param: str) -> MultiVectors:
        if value is None and texts is not None:
            if self._encoder_loader is None:
                raise InvalidInputError(f"{owner}: texts need the collection's encoder, got none bound to the layer.")
            value = self._encoder_loader().encode_tokens(texts, dtype=np.float32) if texts else None
        if value is None:
            raise InvalidInputError(
                f"{owner}: {param} must be MultiVectors (token vectors) or texts must be given, got neither. "
                "Use Encoder.encode_tokens(texts) or create the collection with encoder=... (CLI: --model).")
        mv = check_multivectors(value, owner, param, dim=self.dim, role=param)
        if len(mv) != n:
            raise InvalidInputError(f"{owner}: {param} must hold one item per id ({n}), got {len(mv)}.")
        if not np.isfinite(np.asarray(mv.vectors, dtype=np.float32)).all():
            raise InvalidInputError(f"{owner}: {param} must be finite, got NaN or inf in the token vectors.")
        return mv

    def prepare(self, vectors: Any, texts: list[str] | None, n: int, owner: str) -> tuple[np.ndarray, Any]:
        if n == 0:
            return np.zeros((0, self.pipeline.fde_dim(self.dim)), np.float32), None
        stored, fdes = self.pipeline.encode_documents(self._tokens(vectors, texts, n, owner, "vectors"))
        return fdes, stored

    def append(self, start_row: int, payload: MultiVectors | None) -> None:
        if payload is None:
            return
        tokens_path, ends_path = self._paths(self._generation)
        ends = np.fromfile(ends_path, dtype=np.int64, count=start_row) if start_row else np.zeros(0, np.int64)
        first = int(ends[-1]) if start_row else 0
        itemsize = np.dtype(self._dtype).itemsize
        with open(tokens_path, "r+b") as f:  # overwrite anything past the committed rows (a crashed batch)
            f.seek(first * self.dim * itemsize)
            f.write(np.ascontiguousarray(payload.vectors, dtype=self._dtype).tobytes())
            f.flush()
            os.fsync(f.fileno())
        with open(ends_path, "r+b") as f:
            f.seek(start_row * 8)
            f.write((first + payload.offsets[1:]).astype(np.int64).tobytes())
            f.flush()
            os.fsync(f.fileno())

    def open(self, n_rows: int, generation: int) -> None:
        self._n, self._generation, self._documents = int(n_rows), int(generation), None

    def query(self, queries: Any, owner: str) -> tuple[np.ndarray, MultiVectors]:
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(q, str) for q in queries):
            mv = self._tokens(None, list(queries), len(queries), owner, "queries")
        else:
            mv = self._tokens(queries, None, len(queries) if isinstance(queries, MultiVectors) else -1, owner, "queries")
        return self.pipeline.encode_queries(mv), mv

    def candidates(self, k: int) -> int:
        return self.pipeline.pool(k)

    def rerank(self, query_payload: MultiVectors, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pipeline.rerank(query_payload, self.documents, rows, k)

    def compact(self, keep_rows: np.ndarray, generation: int) -> None:
        docs = self.documents
        rows, offsets = token_rows(docs.offsets, keep_rows)
        self._write_files(generation, MultiVectors(np.asarray(docs.vectors[rows], dtype=self._dtype), offsets))

    def generation_files(self, folder: Path) -> dict[int, list[Path]]:
        out: dict[int, list[Path]] = {}
        for pattern in (rf"tokens-(\d+)\.{self._suffix}", r"token-ends-(\d+)\.i64"):
            for path in Path(folder).iterdir():
                m = re.fullmatch(pattern, path.name)
                if m:
                    out.setdefault(int(m.group(1)), []).append(path)
        return out

    def __repr__(self) -> str:
        return f"MuveraLayer({json.dumps(self._config)})"
