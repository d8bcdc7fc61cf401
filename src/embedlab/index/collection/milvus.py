"""``MilvusCollection``: the :class:`~embedlab.index.collection.collection.Collection` API over Milvus.

``Collection.create(path, dim=..., backend="milvus", uri=...)`` keeps a small local folder at ``path`` (its
manifest: the Milvus address and collection name, dim, metric, index, the metadata schema, the encoder; and, for
multi-vector collections, the token store) and stores the items in a Milvus collection through ``pymilvus``. With
``uri=None`` Milvus Lite runs embedded in the process on ``path/milvus.db``; production points ``uri`` at a
Milvus server or cluster — the one change::

    Collection.create("wordnet", dim=384, backend="milvus")                               # Milvus Lite, embedded
    Collection.create("wordnet", dim=384, backend="milvus", uri="http://milvus:19530")    # a Milvus cluster

The Milvus collection (created at the first write, when the kind of ids is known) has the fields ``id``
(INT64 or VARCHAR primary key), ``vector`` (FLOAT_VECTOR), ``text`` (nullable VARCHAR), one typed nullable column
per field declared in ``schema=`` (``m_<field>``: VARCHAR, INT64, DOUBLE, BOOL or ARRAY of VARCHAR; for fields
named like identifiers), ``meta`` (JSON: every other field) and, for multi-vector collections, ``row`` (the item's
row in the local token store). Filters are translated by :mod:`embedlab.index.filters.milvus`; declare the fields
you filter on — Milvus Lite evaluates a typed column vectorised and a JSON path row by row (about 30x slower on
WordNet's 117k items). Index kinds map to Milvus index types (:func:`milvus_index`): ``flat`` -> FLAT, ``hnsw``
-> HNSW, ``ivf`` -> IVF_FLAT, and the ``int8`` codec -> HNSW_SQ (``hnsw``) or IVF_SQ8 (``ivf``); other codecs (PQ,
binary, float16, int4, truncation) raise ``UnsupportedError``. Multi-vector collections store one MUVERA FDE per
item in Milvus (Dhulipala et al. 2024, "MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings") and
re-rank its candidates by exact MaxSim from the local token store (:mod:`embedlab.index.multivector.layer`);
Milvus Lite itself has no arrays of vectors.

Differences from the local backend, each explicit: ``plan`` raises ``UnsupportedError`` (Milvus plans filtered
searches itself); ``compact`` asks Milvus to compact (the token store keeps replaced items' tokens); a search may
ask for at most :data:`MILVUS_MAX_TOPK` hits (``k + offset``); ids and texts are at most :data:`MAX_FIELD_BYTES`
UTF-8 bytes. Milvus has no multi-row transactions: a failed ``add`` deletes the batches it had inserted, a failed
``upsert`` can leave some of its batches applied (each batch is atomic). One writer per folder (``writer.lock``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from embedlab.errors import (ConflictError, DataFormatError, InvalidInputError, NotFoundError, UnavailableError,
                             UnsupportedError)
from embedlab.files import replacing
from embedlab.index.collection import operations, storage
from embedlab.index.collection.base import CollectionBase, encoder_spec, open_encoder, pad_hits
from embedlab.index.collection.inputs import (METRICS, check_ef, check_ids, check_k, check_results, check_texts,
                                              check_vectors, prepare_vectors, warnings_at_caller)
from embedlab.index.collection.layer import create_layer, load_layer
from embedlab.index.collection.metadata import MetadataTable
from embedlab.index.collection.storage import WriterLock
from embedlab.index.filters.ast import Filter, as_filter
from embedlab.index.filters.milvus import META_FIELD, literal, to_milvus
from embedlab.index.search.faiss_backends import FlatIndex, HNSWIndex, IVFIndex
from embedlab.params import check_choice, check_int
from embedlab.types import Hits, ProgressCallback, report_progress

EXACT_MAX_ROWS = 16_384  # a filtered search gathers at most this many allowed items to score them exactly here
GATHER_COST_ROWS = 8.0  # gathering one item's vector from Milvus, in rows scored (measured order, Milvus Lite)
MILVUS_MAX_TOPK = 16_384  # Milvus's limit on the hits of one search (limit + offset)
MAX_FIELD_BYTES = 65_535  # Milvus's longest VARCHAR: the longest id and text
LITE_FILE = "milvus.db"  # Milvus Lite's file inside the collection folder when uri is None
DEFAULT_TIMEOUT_S = 10.0  # connecting, and every call: a server that does not answer fails within this time
BATCH_BYTES = 16 << 20  # rows per insert call are capped near this many bytes (gRPC's message limit is 64 MiB)
_METRICS = {"cosine": "IP", "ip": "IP", "l2": "L2"}  # cosine rows are unit-normalised on the way in
_INDEXES = {"flat": FlatIndex, "hnsw": HNSWIndex, "ivf": IVFIndex}
_SQ_CODECS = ("int8",)  # the codec Milvus has (scalar quantisation to 8 bits); others are UnsupportedError
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")  # declared fields named like this get a typed column
MAX_ARRAY = 4096  # Milvus's longest ARRAY: the most values a declared list[str] field holds



def milvus_index(kind: str, params: dict, owner: str) -> tuple[str, dict]:
    """``(Milvus index type, build params)`` for a collection's ``index`` and checked ``index_params``."""
    codec = params.get("codec")
    if codec is None:
        if kind == "flat":
            return "FLAT", {}
        if kind == "hnsw":
            return "HNSW", {"M": params["M"], "efConstruction": params["ef_construction"]}
        return "IVF_FLAT", {"nlist": params["nlist"]}
    if kind == "hnsw":
        return "HNSW_SQ", {"M": params["M"], "efConstruction": params["ef_construction"], "sq_type": "SQ8"}
    return "IVF_SQ8", {"nlist": params["nlist"]}


def check_index(kind: str, params: dict, owner: str) -> dict:
    """Validated ``index_params`` for a Milvus collection: the local index's own parameters, plus ``codec`` only
    where Milvus has that index (``int8`` with ``hnsw`` or ``ivf``)."""
    check_choice(kind, sorted(_INDEXES), owner, "index")
    params = dict(params)
    codec = params.pop("codec", None)
    if codec is not None:
        if not isinstance(codec, str) or codec.strip().lower() not in _SQ_CODECS:
            raise UnsupportedError(
                f"{owner}: codec must be one Milvus has an index for ('int8' -> HNSW_SQ or IVF_SQ8) with "
                f"backend='milvus', got {codec!r}. PQ, binary, float16, int4 and truncation codecs are local only: "
                "use backend='local' for them.")
        if kind == "flat":
            raise UnsupportedError(f"{owner}: codec='int8' needs index='hnsw' (HNSW_SQ) or index='ivf' (IVF_SQ8) "
                                   "with backend='milvus', got index='flat' (Milvus has no flat SQ8 index).")
    extra = sorted(set(params) & {"rescore", "oversample", "codec_train_size", "funnel"})
    if extra:
        raise UnsupportedError(f"{owner}: index parameter {extra[0]!r} is not available with backend='milvus' (Milvus "
                               "scores its own index; funnel search is local only). Drop it, or use backend='local'.")
    out = _INDEXES[kind].check_params(params, owner)
    if kind == "ivf":
        out.pop("train_size", None)
        if out.get("nlist") is None:
            out["nlist"] = 256  # Milvus needs nlist up front; the local ivf sizes it from the data at training
    if codec is not None:
        out["codec"] = "int8"
    return out


def connect(uri: str, owner: str, timeout: float):
    """A ``MilvusClient`` on ``uri`` (a Milvus Lite ``.db`` path or a server address); a server that does not
    answer within ``timeout`` seconds raises :class:`~embedlab.errors.UnavailableError`."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # it logs each failed call before raising it
    try:
        return MilvusClient(uri=uri, timeout=timeout)
    except MilvusException as exc:
        raise UnavailableError(
            f"{owner}: uri must name a Milvus server that answers within {timeout:g} s, got {uri!r}: "
            f"{getattr(exc, 'message', exc)}. Start the server (milvus-lite server --host 127.0.0.1 for a local one), "
            "check the address, or pass uri=None for Milvus Lite embedded in the collection folder.") from None


class MilvusCollection(CollectionBase):
    """A collection whose items live in Milvus (see the module docstring); create and open it through
    :meth:`Collection.create(..., backend="milvus") <embedlab.index.collection.collection.Collection.create>` and
    :meth:`Collection.open <embedlab.index.collection.collection.Collection.open>`."""

    backend = "milvus"

    def __init__(self, folder: Path, manifest: dict, *, readonly: bool, encoder: Any = None,
                 timeout: float | None = None, query_alignment: Any = None) -> None:
        self.path = folder
        self._manifest = manifest
        self.dim, self.metric = int(manifest["dim"]), manifest["metric"]
        self._vdim = int(manifest.get("index_dim", self.dim))
        self.index_kind, self.index_params = manifest["index"], manifest["index_params"]
        self._readonly = readonly
        self._encoder_obj = encoder
        self._query_alignment = query_alignment  # set: the encoder is another model's, aligned for queries only
        self._mutex = threading.RLock()
        self._lock = WriterLock(folder)
        self._closed = False
        self._timeout = float(manifest.get("timeout_s", DEFAULT_TIMEOUT_S) if timeout is None else timeout)
        self._name = manifest["milvus"]["collection"]
        self._uri = manifest["milvus"]["uri"]
        self._meta = MetadataTable(manifest.get("schema") or {}, declared=manifest.get("declared") or ())
        self._columns: dict[str, str] = dict(manifest.get("columns") or {})  # field -> typed column
        try:
            self._layer = load_layer(folder, manifest.get("layer"), self.dim, self.metric)
        except (KeyError, TypeError, InvalidInputError) as exc:
            raise DataFormatError(f"Collection.open: layer in {folder / storage.MANIFEST} must be a valid layer "
                                  f"configuration, got an error: {exc}. Restore the manifest.") from None
        if self._layer is not None:
            self._layer.bind_encoder(lambda: self._load_encoder("Collection.add"))
            self._layer.open(int(manifest.get("rows", 0)), 0)
        self._client = connect(self._address(), "Collection.open", self._timeout)
        self._ready = self._client.has_collection(self._name, timeout=self._timeout)
        if self._ready:
            self._client.load_collection(self._name, timeout=self._timeout)

    def _address(self) -> str:
        return str(self.path / LITE_FILE) if self._uri is None else self._uri

    @classmethod
    def create(cls, folder: Path, *, dim: int, metric: str, index: str | None, encoder: Any, schema: dict | None,
               multivector: Any, uri: str | None, name: str | None, timeout: float | None,
               index_params: dict) -> "MilvusCollection":
        """See ``Collection.create``; ``folder`` is checked by the caller."""
        owner = "Collection.create"
        dim = check_int(dim, owner, "dim")
        check_choice(metric, METRICS, owner, "metric")
        index = index or "hnsw"
        params = check_index(index, index_params, owner)
        schema = MetadataTable.check_schema(schema, owner)
        encoder_name, encoder_obj = encoder_spec(encoder, dim, owner)
        if uri is not None and (not isinstance(uri, str) or not uri):
            raise InvalidInputError(f"{owner}: uri must be a Milvus address such as 'http://127.0.0.1:19530' (or None "
                                    f"for Milvus Lite in the folder), got {uri!r}.")
        name = name if name is not None else "embedlab_" + re.sub(r"[^A-Za-z0-9_]", "_", folder.name)[:200]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInputError(f"{owner}: name must be a Milvus collection name (a letter or '_', then letters, "
                                    f"digits or '_', at most 255), got {name!r}.")
        timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        if not timeout > 0:
            raise InvalidInputError(f"{owner}: timeout must be a positive number of seconds, got {timeout!r}.")
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ConflictError(f"{owner}: path must not exist or be an empty folder, got existing {str(folder)!r}. "
                                "Open it with Collection.open(path) or choose a new path.")
        if uri is not None:  # a server: check it answers and that the name is free before writing anything
            client = connect(uri, owner, timeout)
            try:
                if client.has_collection(name, timeout=timeout):
                    raise ConflictError(f"{owner}: name must be a new Milvus collection, got {name!r}, which exists at "
                                        f"{uri}. Choose another name, or drop that collection in Milvus.")
            finally:
                client.close()
        folder.parent.mkdir(parents=True, exist_ok=True)
        manifest = {"format_version": storage.FORMAT_VERSION, "backend": "milvus", "dim": dim, "metric": metric,
                    "index": index, "index_params": params, "encoder": encoder_name,
                    "space": getattr(encoder_obj, "space", None), "schema": schema,
                    "declared": sorted(schema), "id_kind": None, "timeout_s": timeout,
                    "columns": {f: f"m_{f}" for f in sorted(schema) if _COLUMN.fullmatch(f)},
                    "milvus": {"uri": uri, "collection": name}}
        with replacing(folder) as tmp:
            tmp.mkdir()
            if multivector is not False and multivector is not None:
                options = {} if multivector is True else multivector
                manifest["layer"] = create_layer("multivector", tmp, dim, metric, options, owner)
                manifest["index_dim"] = int(manifest["layer"].pop("index_dim", dim))
                manifest["rows"] = 0
            storage.write_manifest(tmp, manifest)
        return cls(folder, manifest, readonly=False, encoder=encoder_obj, timeout=timeout)

    @classmethod
    def open(cls, folder: Path, manifest: dict, *, readonly: bool, encoder: Any,
             allow_foreign_encoder: bool = False) -> "MilvusCollection":
        keys = {"dim", "metric", "index", "index_params", "milvus", "schema"}
        if not keys <= set(manifest) or not isinstance(manifest.get("milvus"), dict):
            raise DataFormatError(f"Collection.open: {folder / storage.MANIFEST} must be a Milvus collection manifest "
                                  f"with {sorted(keys)}, got keys {sorted(manifest)}. Restore the manifest.")
        enc, alignment = open_encoder(encoder, manifest, "Collection.open", allow_foreign_encoder)
        return cls(folder, manifest, readonly=readonly, encoder=enc, query_alignment=alignment)

    def __repr__(self) -> str:
        where = self._uri or f"Milvus Lite {self._address()}"
        return (f"MilvusCollection({str(self.path)!r}, {where}, collection={self._name!r}, dim={self.dim}, "
                f"metric={self.metric!r}, index={self.index_kind!r}{', closed' if self._closed else ''})")

    # ------------------------------------------------------------------ plumbing
    def _begin(self, owner: str, write: bool = False) -> None:
        if self._closed:
            raise InvalidInputError(f"{owner}: the collection must be open, got a closed one. Reopen it with Collection.open.")
        if write:
            if self._readonly:
                raise UnsupportedError(f"{owner}: this collection was opened with readonly=True; open it without to write.")
            self._lock.acquire(owner)
        self._reload_manifest()

    def _reload_manifest(self) -> None:
        """Pick up schema, id kind and token rows another process's writer recorded (cheap: one stat)."""
        path = self.path / storage.MANIFEST
        stamp = path.stat().st_mtime_ns
        if getattr(self, "_stamp", None) == stamp:
            return
        if getattr(self, "_stamp", None) is not None and self._lock.fd is None:
            self._manifest = storage.read_manifest(self.path)
            self._meta = MetadataTable(self._manifest.get("schema") or {}, declared=self._manifest.get("declared") or ())
            if self._layer is not None:
                self._layer.open(int(self._manifest.get("rows", 0)), 0)
            if not self._ready and self._manifest.get("id_kind") is not None:
                self._ready = self._client.has_collection(self._name, timeout=self._timeout)
                if self._ready:
                    self._client.load_collection(self._name, timeout=self._timeout)
        self._stamp = stamp

    def _record(self, prepared, **changes: Any) -> None:
        """Save the manifest with the batch's new and widened fields (and ``changes``) when that changes it, and type
        those fields in memory."""
        schema = {**self._meta.schema, **prepared.new_fields, **{f: "float" for f in prepared.widened}}
        manifest = dict(self._manifest, schema=schema, **changes)
        if manifest == self._manifest:
            return
        self._save_manifest(manifest)
        for name, ftype in prepared.new_fields.items():
            self._meta.add_field(name, ftype)
        for name in prepared.widened:
            self._meta.widen(name)

    def _save_manifest(self, manifest: dict) -> None:
        storage.write_manifest(self.path, manifest)
        self._manifest = manifest
        self._stamp = (self.path / storage.MANIFEST).stat().st_mtime_ns

    def _call(self, owner: str, method: str, *args, **kwargs):
        """One ``MilvusClient`` call, bounded by the collection's timeout, its errors as embedlab errors."""
        from pymilvus.exceptions import MilvusException

        try:
            return getattr(self._client, method)(*args, timeout=self._timeout, **kwargs)
        except MilvusException as exc:
            message = getattr(exc, "message", str(exc))
            if "timeout" in message.lower() or "unavailable" in message.lower() or "connect" in message.lower():
                raise UnavailableError(f"{owner}: Milvus at {self._uri or self._address()} must answer within "
                                       f"{self._timeout:g} s, got: {message}. Check the server.") from None
            raise UnsupportedError(f"{owner}: Milvus refused the call ({method}): {message}.") from None

    def _create_milvus_collection(self, kind: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        if kind == "int":
            schema.add_field("id", DataType.INT64, is_primary=True)
        else:
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_FIELD_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._vdim)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_FIELD_BYTES, nullable=True)
        types = {"str": dict(datatype=DataType.VARCHAR, max_length=MAX_FIELD_BYTES), "int": dict(datatype=DataType.INT64),
                 "float": dict(datatype=DataType.DOUBLE), "bool": dict(datatype=DataType.BOOL),
                 "list[str]": dict(datatype=DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_ARRAY,
                                   max_length=MAX_FIELD_BYTES)}
        for field, column in self._columns.items():
            schema.add_field(column, nullable=True, **types[self._meta.schema[field]])
        schema.add_field(META_FIELD, DataType.JSON)
        if self._layer is not None:
            schema.add_field("row", DataType.INT64)
        index_type, build = milvus_index(self.index_kind, self.index_params, "Collection.add")
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=index_type, metric_type=_METRICS[self.metric], params=build)
        self._call("Collection.add", "create_collection", self._name, schema=schema, index_params=index_params,
                   consistency_level="Strong")
        self._call("Collection.add", "load_collection", self._name)
        self._ready = True

    def _search_params(self, ef: int | None, want: int) -> dict:
        if self.index_kind == "hnsw":
            return {"params": {"ef": max(ef or self.index_params["ef_search"], want)}}
        if self.index_kind == "ivf":
            return {"params": {"nprobe": ef or self.index_params["nprobe"]}}
        return {}

    def _existing(self, ids: list, owner: str) -> list:
        if not self._ready or not ids:
            return []
        found = set()
        for s in range(0, len(ids), 4096):
            found.update(r["id"] for r in self._call(owner, "get", self._name, ids=ids[s : s + 4096],
                                                     output_fields=["id"]))
        return [i for i in ids if i in found]

    def _require(self, ids: list, owner: str) -> None:
        existing = set(self._existing(ids, owner))
        missing = [i for i in ids if i not in existing]
        if missing:
            raise NotFoundError(f"{owner}: ids must exist, got {len(missing)} unknown (first: {missing[0]!r}).")

    def _expr(self, node: Filter | None, owner: str) -> str:
        if node is None:
            return ""
        self._meta.validate(node, owner)  # unknown fields and wrongly typed values, as in the local backend
        return to_milvus(node, self._columns, owner)

    # ------------------------------------------------------------------ writes
    def add(self, ids: Any, vectors: Any = None, *, texts: list[str] | None = None,
            metadata: list[dict] | None = None) -> None:
        """As :meth:`Collection.add <embedlab.index.collection.collection.Collection.add>`."""
        self._write("Collection.add", ids, vectors, texts, metadata, upsert=False)

    def upsert(self, ids: Any, vectors: Any = None, *, texts: list[str] | None = None,
               metadata: list[dict] | None = None) -> None:
        """As :meth:`Collection.upsert <embedlab.index.collection.collection.Collection.upsert>`."""
        self._write("Collection.upsert", ids, vectors, texts, metadata, upsert=True)

    def _write(self, owner: str, ids: Any, vectors: Any, texts: Any, metadata: Any, *, upsert: bool) -> None:
        with self._mutex:
            self._begin(owner, write=True)
            ids, kind = check_ids(ids, owner, self._manifest.get("id_kind"))
            n = len(ids)
            if texts is not None:
                texts = check_texts(texts, n, owner)
            payload = None
            if self._layer is not None:
                with warnings_at_caller():
                    vecs, payload = self._layer.prepare(vectors, texts, n, owner)
                vecs = prepare_vectors(check_vectors(vecs, n, self._vdim, owner), self.metric, owner)
            else:
                if vectors is None:
                    if texts is None:
                        raise InvalidInputError(f"{owner}: vectors or texts must be given, got neither.")
                    vectors = self._encode(texts, owner, "documents") if n else np.zeros((0, self.dim), np.float32)
                vecs = prepare_vectors(check_vectors(vectors, n, self.dim, owner), self.metric, owner)
            prepared = self._meta.prepare(metadata, n, owner)
            _check_lengths(ids, texts, owner)
            existing = self._existing(ids, owner)
            if existing and not upsert:
                raise ConflictError(
                    f"{owner}: ids must not exist yet, got {len(existing)} existing (first: {existing[0]!r}). "
                    "Use upsert to replace them, or delete them first.")
            if n == 0:
                return
            start = int(self._manifest.get("rows", 0))
            changes: dict[str, Any] = {"id_kind": kind}
            if self._layer is not None:
                self._layer.append(start, payload)  # tokens first, then the row counter, then Milvus (see module doc)
                changes["rows"] = start + n
            self._record(prepared, **changes)
            if self._layer is not None:
                self._layer.open(start + n, 0)
            if not self._ready:
                self._create_milvus_collection(kind)
            _check_values(prepared.rows, self._columns, owner)
            rows = [{"id": i, "vector": v, "text": t, **self._split(m)}
                    for i, v, t, m in zip(ids, vecs, texts or [None] * n, prepared.rows)]
            if self._layer is not None:
                for r, row in enumerate(rows):
                    row["row"] = start + r
            self._put(owner, rows, upsert)

    def _put(self, owner: str, rows: list[dict], upsert: bool) -> None:
        """Insert (or upsert) ``rows`` in batches of about :data:`BATCH_BYTES`; a failed insert deletes what this call
        had inserted."""
        per_row = 4 * self._vdim + 64 + sum(len(str(v)) for v in rows[0].values() if not isinstance(v, np.ndarray))
        step = max(1, BATCH_BYTES // per_row)
        done: list = []
        try:
            for s in range(0, len(rows), step):
                batch = [dict(r, vector=r["vector"].tolist()) for r in rows[s : s + step]]
                self._call(owner, "upsert" if upsert else "insert", self._name, batch)
                done.extend(r["id"] for r in batch)
        except BaseException:
            if done and not upsert:
                with contextlib.suppress(Exception):
                    self._call(owner, "delete", self._name, ids=done)
            raise

    def delete(self, ids: Any = None, *, filter: Filter | str | dict | None = None) -> int:
        """As :meth:`Collection.delete <embedlab.index.collection.collection.Collection.delete>`."""
        owner = "Collection.delete"
        with self._mutex:
            self._begin(owner, write=True)
            if (ids is None) == (filter is None):
                raise InvalidInputError(f"{owner}: give ids or filter, got {'both' if ids is not None else 'neither'}. "
                                        "Delete by id with delete(ids), or by metadata with delete(filter=...).")
            if ids is not None:
                ids, _ = check_ids(ids, owner, self._manifest.get("id_kind"))
                self._require(ids, owner)
                if ids:
                    self._call(owner, "delete", self._name, ids=ids)
                return len(ids)
            expr = self._expr(as_filter(filter, owner), owner)
            if not self._ready:
                return 0
            n = self._count(expr, owner)
            if n:
                self._call(owner, "delete", self._name, filter=expr)
            return n

    def update_metadata(self, ids: Any, metadata: list[dict | None], *, replace: bool = False) -> None:
        """As :meth:`Collection.update_metadata <embedlab.index.collection.collection.Collection.update_metadata>`
        (the items are re-written whole, with their vectors, in Milvus)."""
        owner = "Collection.update_metadata"
        with self._mutex:
            self._begin(owner, write=True)
            ids, _ = check_ids(ids, owner, self._manifest.get("id_kind"))
            if not isinstance(replace, bool):
                raise InvalidInputError(f"{owner}: replace must be a bool, got {replace!r}.")
            prepared = self._meta.prepare(metadata, len(ids), owner)
            self._require(ids, owner)
            if not ids:
                return
            current = {r["id"]: r for r in self._fetch(ids, owner, ["id", "vector", "text", *self._meta_fields()]
                                                        + (["row"] if self._layer is not None else []))}
            rows = [current[i] for i in ids]
            merged = operations.merge_updates([self._join(r) for r in rows], metadata, prepared.rows, replace)
            _check_values(merged, self._columns, owner)
            self._record(prepared)
            self._put(owner, [dict(r, vector=np.asarray(r["vector"], np.float32), **self._split(m))
                              for r, m in zip(rows, merged)], upsert=True)

    def compact(self, *, progress: ProgressCallback | None = None) -> None:
        """Ask Milvus to compact the collection's segments (it also does so on its own); the token store of a
        multi-vector collection keeps the tokens of replaced items."""
        with self._mutex:
            self._begin("Collection.compact", write=True)
            report_progress(progress, 0, 1)
            if self._ready:
                self._call("Collection.compact", "compact", self._name)
            report_progress(progress, 1, 1)

    def flush(self) -> None:
        """Seal what Milvus holds in memory into indexed segments (Milvus Lite scans its in-memory rows by brute
        force: after a bulk load, flush once; :meth:`close` does it for a writer). Not needed for durability."""
        with self._mutex:
            self._begin("Collection.flush")
            if self._ready:
                self._call("Collection.flush", "flush", self._name)

    def close(self) -> None:
        """Flush (a writer), release the writer lock and the Milvus client. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            try:
                if self._lock.fd is not None and self._ready:
                    with contextlib.suppress(Exception):
                        self._call("Collection.close", "flush", self._name)
                with contextlib.suppress(Exception):
                    self._client.close()
            finally:
                self._lock.release()
                self._closed = True

    def drop(self) -> None:
        """Delete the Milvus collection (its data in Milvus) and close; the local folder is the caller's to remove."""
        with self._mutex:
            self._begin("Collection.drop", write=True)
            if self._ready:
                self._call("Collection.drop", "drop_collection", self._name)
            self.close()

    # ------------------------------------------------------------------ reads
    def _fetch(self, ids: list, owner: str, fields: list[str]) -> list[dict]:
        out: list[dict] = []
        for s in range(0, len(ids), 4096):
            out.extend(self._call(owner, "get", self._name, ids=ids[s : s + 4096], output_fields=fields))
        return out

    def _count(self, expr: str, owner: str) -> int:
        if not self._ready:
            return 0
        res = self._call(owner, "query", self._name, filter=expr, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def count(self, filter: Filter | str | dict | None = None) -> int:
        """Number of items, or of those matching ``filter``."""
        owner = "Collection.count"
        with self._mutex:
            self._begin(owner)
            return self._count(self._expr(as_filter(filter, owner), owner), owner)

    def get(self, ids: Any) -> list[dict]:
        """As :meth:`Collection.get <embedlab.index.collection.collection.Collection.get>`."""
        owner = "Collection.get"
        with self._mutex:
            self._begin(owner)
            ids, _ = check_ids(ids, owner, self._manifest.get("id_kind"))
            found = {r["id"]: r for r in (self._fetch(ids, owner, ["id", "vector", "text", *self._meta_fields()])
                                          if self._ready and ids else [])}
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFoundError(f"{owner}: ids must exist, got {len(missing)} unknown (first: {missing[0]!r}).")
            return [{"id": i, "vector": np.asarray(found[i]["vector"], np.float32), "metadata": self._join(found[i]),
                     "text": found[i]["text"]} for i in ids]

    def contains(self, ids: Any) -> np.ndarray:
        """bool ``[n]``: which ``ids`` are stored."""
        owner = "Collection.contains"
        with self._mutex:
            self._begin(owner)
            ids, _ = check_ids(ids, owner, self._manifest.get("id_kind"))
            existing = set(self._existing(ids, owner))
            return np.fromiter((i in existing for i in ids), dtype=bool, count=len(ids))

    def scroll(self, filter: Filter | str | dict | None = None, limit: int = 100, cursor: Any = None, *,
               include: tuple[str, ...] = ()) -> tuple[list[dict], Any]:
        """As :meth:`Collection.scroll <embedlab.index.collection.collection.Collection.scroll>`: ascending id
        order (Milvus's query iterator walks the primary key), the cursor being the last id listed."""
        owner = "Collection.scroll"
        with self._mutex:
            self._begin(owner)
            expr = self._expr(as_filter(filter, owner), owner)
            limit = check_int(limit, owner, "limit", high=operations.MAX_SCROLL_LIMIT)
            cursor = operations.check_cursor(cursor, self._manifest.get("id_kind"), owner)
            include = operations.check_include(include, owner, vectors_supported=self._layer is None)
            if not self._ready:
                return [], None
            if cursor is not None:
                expr = f"(id > {literal(cursor, owner)})" + (f" and {expr}" if expr else "")
            fields = ["id"] + self._output_fields(include)
            it = self._call(owner, "query_iterator", self._name, batch_size=limit + 1, filter=expr, output_fields=fields)
            try:
                batch = it.next()
            finally:
                it.close()
            items = [self._item(r, include) for r in batch[:limit]]
            return items, (items[-1]["id"] if len(batch) > limit else None)

    def iter_items(self, batch_size: int = 1000, cursor: Any = None,
                   include: tuple[str, ...] = ("vector", "text", "metadata")) -> Iterator[tuple[list[dict], Any]]:
        """Every item in id order after ``cursor``, ``(items, last_id)`` per batch (what ``embedlab export`` reads)."""
        while True:
            items, cursor = self.scroll(limit=batch_size, cursor=cursor, include=include)
            if items:
                yield items, items[-1]["id"]
            if cursor is None:
                return

    def search(self, queries: Any, k: int = 10, *, filter: Filter | str | None = None, ef: int | None = None,
               offset: int = 0, min_score: float | None = None, include: tuple[str, ...] = (),
               oversample: int | None = None, mode: str = "dense", fusion: str = "rrf", weights: Any = None,
               query_texts: Any = None, rerank: Any = None, rerank_candidates: int = 100,
               rerank_weights: Any = None) -> Hits:
        """As :meth:`Collection.search <embedlab.index.collection.collection.Collection.search>`; the strategy
        of every query is ``"milvus"`` (``"milvus+rerank"`` for multi-vector collections). ``oversample``, a
        ``mode`` other than ``"dense"`` and ``rerank`` are errors: Milvus collections do not rescore candidates and
        keep no text index here."""
        owner = "Collection.search"
        if mode != "dense" or rerank is not None or rerank_weights is not None or weights is not None \
                or query_texts is not None:
            raise UnsupportedError(f"{owner}: hybrid / sparse search and rerank= use embedlab's text index of local "
                                   f"collections, got mode={mode!r}, rerank={type(rerank).__name__} with "
                                   "backend='milvus'. Create the collection with backend='local', text_index=True.")
        if oversample is not None:
            raise InvalidInputError(f"{owner}: oversample applies to local collections that rescore candidates "
                                    f"(funnel= or codec=), got oversample={oversample!r} with backend='milvus'. Drop it.")
        with self._mutex:
            self._begin(owner)
            k = check_k(k, owner)
            ef = check_ef(ef, owner, self.index_kind)
            expr = self._expr(as_filter(filter, owner), owner)
            offset = operations.check_offset(offset, owner)
            min_score = operations.check_min_score(min_score, owner)
            include = operations.check_include(include, owner, vectors_supported=self._layer is None)
            want = k + offset
            q, q_payload = self._search_queries(queries, owner)
            check_results(len(q), want, owner)
            limit = want if self._layer is None else max(self._layer.candidates(want), want)
            if limit > MILVUS_MAX_TOPK:
                raise UnsupportedError(f"{owner}: k + offset (and a multi-vector collection's candidates) must be at "
                                       f"most {MILVUS_MAX_TOPK} with backend='milvus', got {limit}. Page with a "
                                       "smaller k, or use min_score.")
            if len(q) == 0 or not self._ready:
                strategy = ("milvus" if self._layer is None else "milvus+rerank",) * len(q)
                return Hits(np.full((len(q), want), None, object)[:, offset:],
                            np.full((len(q), want), -np.inf, np.float32)[:, offset:], strategy,
                            tuple([None] * k for _ in range(len(q))) if include else None)
            fields = (["row"] if self._layer is not None else []) + self._output_fields(include)
            hits, rows, scores, strategy = self._candidates(q, limit, expr, ef, fields, owner)
            if self._layer is not None:  # rerank by exact MaxSim over the token rows the FDE search found
                token_rows = np.where(rows >= 0, np.array([h["entity"]["row"] for h in hits] + [0])[rows], -1)
                work = min(want, limit)
                scores, picked = self._layer.rerank(q_payload, token_rows, work)
                by_token = [dict(zip(t.tolist(), r.tolist())) for t, r in zip(token_rows, rows)]
                rows = np.array([[by_token[i].get(t, -1) if t >= 0 else -1 for t in picked[i].tolist()]
                                 for i in range(len(q))], np.int64).reshape(len(q), work)
                strategy = [name + "+rerank" for name in strategy]
                if work < want:
                    scores, rows = pad_hits(scores, rows, want)
            scores, rows = scores[:, :want], rows[:, :want]
            if offset or min_score is not None:
                scores, rows = operations.page(scores, rows, offset, min_score)
            ids = np.empty(rows.shape, object)
            ids[...] = None
            for (i, j), r in np.ndenumerate(rows):
                if r >= 0:
                    ids[i, j] = hits[r]["id"]
            payload = None
            if include:
                payload = tuple([self._item(hits[r]["entity"], include, with_id=False) if r >= 0 else None
                                 for r in q_rows.tolist()] for q_rows in rows)
            return Hits(ids, scores.astype(np.float32, copy=False), tuple(strategy), payload)

    def _candidates(self, q: np.ndarray, limit: int, expr: str, ef: int | None, fields: list[str], owner: str):
        """The top ``limit`` per query: ``(hits, rows, scores, strategy)``, where ``hits`` lists every hit once as
        ``{"id", "entity": {field: value}}``, ``rows`` int64 ``[nq, limit]`` indexes it (``-1``: padding) and
        ``scores`` are float32, higher-is-better.

        A filtered search is planned as the local one is (:mod:`embedlab.index.search.planner`), from the exact
        count of allowed items that Milvus reports: few allowed items (at most ``limit``, or too few for a graph
        walk to be cheaper, up to :data:`EXACT_MAX_ROWS`) are gathered once per call and scored exactly here
        (``milvus_exact``); otherwise Milvus searches with efSearch raised for the selectivity (``milvus``; faiss's
        HNSW walk with an id selector, which Milvus Lite runs, loses recall at a fixed efSearch as the filter
        narrows). A query that gets fewer than ``min(limit, allowed)`` hits is answered exactly (``milvus+exact``).
        """
        allowed = self._count(expr, owner) if expr else None
        if allowed is not None:
            strategy, ef = self._plan(limit, allowed, len(q), ef, owner)
            if strategy == "exact":
                return self._exact(q, limit, expr, fields, owner, "milvus_exact")
        found = self._call(owner, "search", self._name, data=q.tolist(), limit=limit, filter=expr, anns_field="vector",
                           search_params=self._search_params(ef, limit), output_fields=fields)
        sign = -1.0 if self.metric == "l2" else 1.0  # Milvus's L2 is the squared distance: scores are -|q - x|^2
        hits: list[dict] = []
        rows = np.full((len(q), limit), -1, np.int64)
        scores = np.full((len(q), limit), -np.inf, np.float32)
        for i, result in enumerate(found):
            for j, h in enumerate(result):
                rows[i, j] = len(hits)
                scores[i, j] = sign * h["distance"]
                hits.append(h)
        strategy = ["milvus"] * len(q)
        got = (rows >= 0).sum(1)
        if (got < limit).any():  # contract: k hits whenever k items pass (the count only when some query is short)
            allowed = self._count(expr, owner) if allowed is None else allowed
        short = np.flatnonzero(got < min(limit, allowed)) if allowed is not None else []
        if len(short) and allowed <= EXACT_MAX_ROWS:
            more, more_rows, more_scores, _ = self._exact(q[short], limit, expr, fields, owner, "")
            rows[short] = np.where(more_rows >= 0, more_rows + len(hits), -1)
            scores[short] = more_scores
            hits.extend(more)
            for i in short:
                strategy[i] = "milvus+exact"
        return hits, rows, scores, strategy

    def _plan(self, limit: int, allowed: int, nq: int, ef: int | None, owner: str) -> tuple[str, int | None]:
        """``("exact", None)`` or ``("ann", ef)`` for ``nq`` queries whose filter lets ``allowed`` items through:
        the local planner's cost model (:func:`embedlab.index.search.planner.plan`), a gathered item costing
        :data:`GATHER_COST_ROWS` scored rows, shared by the call's queries."""
        from embedlab.index.search import planner

        if allowed <= limit:
            return "exact", None
        if self.index_kind == "flat" or allowed > EXACT_MAX_ROWS:
            return "ann", ef
        total = max(self._count("", owner), 1)
        exact_cost = allowed * (1 + GATHER_COST_ROWS / max(nq, 1))
        if self.index_kind == "ivf":
            nprobe = ef or self.index_params["nprobe"]
            graph_cost = planner.IVF_ROW_COST * total * min(nprobe, self.index_params["nlist"]) / self.index_params["nlist"]
            return ("exact", None) if exact_cost <= graph_cost else ("ann", ef)
        base = ef or self.index_params["ef_search"]
        ef_s = min(planner.MAX_EF, math.ceil(max(base, limit) * max(1.0, planner.RAISE_BELOW * total / allowed)
                                             ** planner.RAISE_POWER))
        graph_cost = ef_s * planner.GRAPH_COST_PER_EF * 2 * self.index_params["M"] / 32
        return ("exact", None) if exact_cost <= graph_cost else ("ann", ef_s)

    def _exact(self, q: np.ndarray, limit: int, expr: str, fields: list[str], owner: str, name: str):
        """Every allowed item's vector gathered from Milvus (its query iterator, in batches) and the top ``limit``
        scored exactly (:func:`~embedlab.index.search.planner.exact_rows`), in :meth:`_candidates`' form."""
        from embedlab.index.search import planner

        want = ["id", "vector"] + [f for f in fields if f != "vector"]
        it = self._call(owner, "query_iterator", self._name, batch_size=4096, filter=expr, output_fields=want)
        items: list[dict] = []
        try:
            while batch := it.next():
                items.extend(batch)
        finally:
            it.close()
        vectors = np.asarray([i["vector"] for i in items], np.float32).reshape(len(items), self._vdim)
        scores, rows = planner.exact_rows(q, vectors, np.arange(len(items)), limit, self.metric)
        hits = [{"id": i["id"], "entity": {f: i[f] for f in fields}} for i in items]
        return hits, rows, scores, [name] * len(q)

    def plan(self, *args, **kwargs) -> dict:
        """Not available: Milvus plans filtered searches itself (the local backend's planner does not apply)."""
        raise UnsupportedError("Collection.plan: the query plan is Milvus's own with backend='milvus' (it chooses "
                               "between filtered graph search and brute force itself). Use a local collection to "
                               "see embedlab's planner.")

    def stats(self) -> dict:
        """``count``, ``rows`` (the same: Milvus drops deleted items itself), ``dim``, ``metric``, ``index`` and
        ``index_params``, the Milvus ``index_type``, ``backend``, ``uri`` and ``collection``, ``disk_bytes`` of the
        local folder (the Milvus Lite file included; a server's storage is not counted) and
        ``ram_bytes_per_vector`` (``None``: Milvus keeps its own memory)."""
        with self._mutex:
            self._begin("Collection.stats")
            count = self._count("", "Collection.stats")
            disk = 0
            for p in self.path.rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    disk += p.stat().st_size if p.is_file() else 0
            return {"count": count, "rows": count, "dim": self.dim, "metric": self.metric, "index": self.index_kind,
                    "index_params": dict(self.index_params), "backend": "milvus", "uri": self._uri,
                    "collection": self._name, "index_type": milvus_index(self.index_kind, self.index_params, "")[0],
                    "disk_bytes": disk, "disk_bytes_per_vector": disk / count if count else 0.0,
                    "ram_bytes_per_vector": None}

    # ------------------------------------------------------------------ metadata <-> Milvus fields
    def _split(self, metadata: dict) -> dict:
        """Milvus fields of one item's metadata: its typed columns (``None`` when absent) and the JSON rest."""
        out = {column: metadata.get(field) for field, column in self._columns.items()}
        out[META_FIELD] = {k: v for k, v in metadata.items() if k not in self._columns}
        return out

    def _join(self, entity: dict) -> dict:
        """An item's metadata from its Milvus fields (inverse of :meth:`_split`)."""
        out = {field: entity[column] for field, column in self._columns.items() if entity.get(column) is not None}
        out.update(entity.get(META_FIELD) or {})
        return out

    def _meta_fields(self) -> list[str]:
        return [*self._columns.values(), META_FIELD]

    def _output_fields(self, include: tuple[str, ...]) -> list[str]:
        return [f for name in include for f in (self._meta_fields() if name == "metadata" else [name])]

    def _item(self, entity: dict, include: tuple[str, ...], with_id: bool = True) -> dict:
        """A scroll item or search payload: ``{"id"?, "text"?, "metadata"?, "vector"?}`` from a Milvus entity."""
        out = {"id": entity["id"]} if with_id else {}
        for name in include:
            if name == "metadata":
                out[name] = self._join(entity)
            elif name == "vector":
                out[name] = np.asarray(entity["vector"], np.float32)
            else:
                out[name] = entity[name]
        return out

    @property
    def id_kind(self) -> str | None:
        """``"str"`` or ``"int"``: the kind of ids stored (``None`` before the first add)."""
        with self._mutex:
            self._begin("Collection.id_kind")
            return self._manifest.get("id_kind")

    @property
    def schema(self) -> dict[str, str]:
        """Metadata fields and their types, ``{name: "str" | "int" | "float" | "bool" | "list[str]"}``."""
        with self._mutex:
            self._begin("Collection.schema")
            return dict(self._meta.schema)


def _check_values(rows: list[dict], columns: dict[str, str], owner: str) -> None:
    """Metadata that fits Milvus: typed strings and list values within VARCHAR / ARRAY limits, JSON within 64 KiB."""
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key in columns and isinstance(value, list) and len(value) > MAX_ARRAY:
                raise InvalidInputError(f"{owner}: metadata[{i}][{key!r}] must hold at most {MAX_ARRAY} values with "
                                        f"backend='milvus' (Milvus's longest ARRAY), got {len(value)}.")
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and len(v) * 4 > MAX_FIELD_BYTES and len(v.encode()) > MAX_FIELD_BYTES:
                    raise InvalidInputError(f"{owner}: metadata[{i}][{key!r}] strings must be at most {MAX_FIELD_BYTES} "
                                            f"UTF-8 bytes with backend='milvus', got {len(v.encode())}.")
        rest = {k: v for k, v in row.items() if k not in columns}
        if rest and len(json.dumps(rest)) > MAX_FIELD_BYTES:
            raise InvalidInputError(f"{owner}: metadata[{i}] must be at most {MAX_FIELD_BYTES} bytes of JSON with "
                                    "backend='milvus' (its undeclared fields are one JSON value), got more. Declare "
                                    "large fields in schema= (typed columns) or store less.")


def _check_lengths(ids: list, texts: list[str] | None, owner: str) -> None:
    for param, values in (("ids", ids), ("texts", texts or ())):
        for i, v in enumerate(values):
            if isinstance(v, str) and len(v) * 4 > MAX_FIELD_BYTES and len(v.encode()) > MAX_FIELD_BYTES:
                raise InvalidInputError(f"{owner}: {param}[{i}] must be at most {MAX_FIELD_BYTES} UTF-8 bytes with "
                                        f"backend='milvus' (Milvus's longest VARCHAR), got {len(v.encode())}. "
                                        "Shorten it, or store long texts elsewhere and keep a key.")
