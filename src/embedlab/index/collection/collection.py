"""``Collection``: a persistent folder of vectors with caller ids, typed metadata, filters and ANN search.

See :mod:`embedlab.index.collection.storage` for the layout and crash protocol, :mod:`.mirror` for the in-memory
ids and alive flags, :mod:`embedlab.index.search.planner` for how a filtered query is answered, and
:mod:`embedlab.index.filters` for the filter language.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import ConflictError, DataFormatError, InvalidInputError, UnsupportedError
from embedlab.files import replacing
from embedlab.index.collection import integrity, leases, operations, storage
from embedlab.index.collection.base import CollectionBase, encoder_spec, open_encoder, pad_hits
from embedlab.index.collection.inputs import (
    MAX_K, MAX_RESULTS, METRICS, check_ef, check_ids, check_k, check_results, check_texts, check_vectors,
    prepare_vectors, warnings_at_caller)
from embedlab.index.collection.layer import CollectionLayer, create_layer, load_layer
from embedlab.index.collection.metadata import MetadataTable
from embedlab.index.collection.mirror import Mirror
from embedlab.index.collection.payload import Allowed, PayloadIndex, check_indexes
from embedlab.index.collection.storage import Database, VectorFile, WriterLock
from embedlab.index.collection.text_index import TextIndex
from embedlab.index.filters.ast import Filter, as_filter
from embedlab.index.retrievers.fusion import METHODS as FUSIONS, fuse
from embedlab.index.retrievers import rerank as reranking
from embedlab.index.search import kinds, planner
from embedlab.index.search.faiss_backends import VectorIndex
from embedlab.index.search.funnel import check_oversample
from embedlab.params import check_choice, check_int, check_weight_pair
from embedlab.types import Hits, ProgressCallback, report_progress

MODES = ("dense", "sparse", "hybrid")
HYBRID_DEPTH = 100  # candidates each side of a hybrid search brings to the fusion (at least k + offset)
CHECKPOINT_MIN_ROWS = 10_000  # re-save the ANN index once this many rows (or half the saved count) are unsaved
HEAL_MIN_ROWS = 1_000  # a writer open that replayed this many rows past the newest checkpoint writes a new one


class Collection(CollectionBase):
    """A folder on local disk: vectors + ids + metadata, searchable with filters; one writer, many readers.

    Create with :meth:`create`, reopen with :meth:`open`; use as a context manager or call :meth:`close`.
    Every acknowledged ``add`` / ``upsert`` / ``delete`` is durable. Thread-safe within a process; across
    processes one writer holds ``writer.lock`` (taken at the first write) and readers see its committed
    writes at their next call; a reader's snapshot keeps its generation's files on disk while a writer compacts
    (:mod:`~embedlab.index.collection.leases`). Scores are higher-is-better: inner product, cosine, or minus
    squared L2. Opening checks the folder (:mod:`~embedlab.index.collection.integrity`): a damaged or edited
    manifest, database or vectors file is a ``DataFormatError``, never a wrong answer.
    """

    # ------------------------------------------------------------------ construction
    def __init__(self, folder: Path, manifest: dict, *, readonly: bool, encoder: Any = None,
                 query_alignment: Any = None) -> None:
        self.path = folder
        self._manifest = manifest
        self.dim: int = manifest["dim"]
        self._vdim: int = manifest.get("index_dim", self.dim)  # width of the indexed vectors (a layer may differ)
        self.metric: str = manifest["metric"]
        self.index_kind: str = manifest["index"]
        self.index_params: dict = manifest["index_params"]
        self._readonly = readonly
        self._encoder_obj = encoder
        self._query_alignment = query_alignment  # set: the encoder is another model's, aligned for queries only
        self._mutex = threading.RLock()
        self._lock = WriterLock(folder)
        self._lease = leases.Lease(folder)  # on the generation the snapshot uses (see .leases)
        self._stale: list[int] = []  # old generations the writer could not delete yet (a reader held them)
        self._db = Database(folder, create=False)
        self._closed = False
        try:
            integrity.check_settings(self._db, manifest, folder)
            try:
                self._layer: CollectionLayer | None = load_layer(folder, manifest.get("layer"), self.dim, self.metric)
            except (KeyError, TypeError, InvalidInputError) as exc:
                raise DataFormatError(f"Collection.open: layer in {folder / storage.MANIFEST} must be a valid layer "
                                      f"configuration, got an error: {exc}. Restore the manifest.") from None
            if hasattr(self._layer, "bind_encoder"):  # a layer that turns texts= into its own inputs (multivector)
                self._layer.bind_encoder(lambda: self._load_encoder("Collection.add"))
            self._load()
            if not readonly:
                self._heal()
        except sqlite3.DatabaseError as exc:
            self._lease.release()
            self._db.close()
            raise DataFormatError(f"Collection.open: {folder / storage.DATABASE} must be a collection database, got: "
                                  f"{exc}. Restore the folder from a backup.") from None
        except BaseException:
            self._lease.release()
            self._lock.release()
            self._db.close()
            raise

    @classmethod
    def create(cls, path: str | os.PathLike, *, dim: int, metric: str = "cosine", index: str | None = None,
               encoder: Any = None, schema: dict[str, str] | None = None, indexes: list[str] | None = None,
               text_index: bool = False, multivector: Any = False, backend: str = "local", uri: str | None = None, name: str | None = None, timeout: float | None = None,
               **index_params: Any) -> "Collection":
        """Create an empty collection folder at ``path`` (which must not exist or be an empty folder).

        ``dim``: vector width; ``metric``: ``cosine`` (rows unit-normalised on the way in), ``ip`` or ``l2``;
        ``index``: ``flat`` | ``hnsw`` (``M=16, ef_construction=128, ef_search=64``) | ``ivf`` (``nlist=None``
        (auto), ``nprobe=16``, ``train_size``); ``None`` means ``hnsw``, or ``flat`` when ``codec=`` is given
        (compressed collections scan their in-RAM codes, then rescore; see :mod:`embedlab.index.search.compressed`); ``encoder``: a model name/folder or an ``Encoder`` — stored in the
        manifest so ``texts=`` can be added and searched; ``schema``: ``{field: "str"|"int"|"float"|"bool"|"list[str]"}``
        (undeclared fields are typed by their first value); ``indexes``: the fields given payload indexes
        (:mod:`~embedlab.index.collection.payload`; ``None``: every field, also fields inferred later; ``[]``:
        none, every filter scans); ``text_index``: keep a BM25 index of the stored texts for ``search(mode="sparse" |
        "hybrid")`` (:mod:`~embedlab.index.collection.text_index`); ``multivector``: ``True`` or an options dict to store
        :class:`~embedlab.types.MultiVectors` (searched through fixed-dimensional encodings, re-ranked by exact
        MaxSim; see :mod:`embedlab.index.multivector.layer`). Returns the collection opened for writing.

        ``backend="milvus"`` stores the items in Milvus instead, behind the same API
        (:class:`~embedlab.index.collection.milvus.MilvusCollection`): ``uri`` is the Milvus server
        (``None``: Milvus Lite embedded in the folder), ``name`` the Milvus collection (default from the folder
        name), ``timeout`` the seconds any Milvus call may take (default 10).
        """
        owner = "Collection.create"
        folder = integrity.check_path(path, owner)
        check_choice(backend, ("local", "milvus"), owner, "backend")
        if backend == "milvus":
            from embedlab.index.collection.milvus import MilvusCollection

            if indexes is not None:
                raise UnsupportedError(f"{owner}: indexes= chooses embedlab's payload indexes, got it with "
                                       "backend='milvus' (Milvus keeps its own). Drop indexes=.")
            if text_index:
                raise UnsupportedError(f"{owner}: text_index= keeps a BM25 index beside local collections, got it with "
                                       "backend='milvus'. Use backend='local' for hybrid search.")

            return MilvusCollection.create(folder, dim=dim, metric=metric, index=index, encoder=encoder, schema=schema,
                                           multivector=multivector, uri=uri, name=name, timeout=timeout,
                                           index_params=index_params)
        if uri is not None or name is not None or timeout is not None:
            raise InvalidInputError(f"{owner}: uri, name and timeout are Milvus settings, got them with backend='local'. "
                                    "Pass backend='milvus', or drop them.")
        if index is None:
            index = "flat" if index_params.get("codec") is not None else "hnsw"
        dim = check_int(dim, owner, "dim")
        check_choice(metric, METRICS, owner, "metric")
        if "funnel" in index_params and multivector not in (False, None):
            raise UnsupportedError(f"{owner}: funnel= searches prefixes of single vectors, got it with multivector=. "
                                   "Drop one of them.")
        params = kinds.check_params(index, index_params, owner, metric, dim)
        schema = MetadataTable.check_schema(schema, owner)
        indexes = check_indexes(indexes, schema, owner)
        if not isinstance(text_index, bool):
            raise InvalidInputError(f"{owner}: text_index must be True or False, got {text_index!r}.")
        encoder_name, encoder_obj = encoder_spec(encoder, dim, owner)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ConflictError(
                f"{owner}: path must not exist or be an empty folder, got existing {str(folder)!r}. "
                "Open it with Collection.open(path) or choose a new path.")
        folder.parent.mkdir(parents=True, exist_ok=True)
        with replacing(folder) as tmp:  # the folder appears whole (manifest, database, layer files) or not at all
            tmp.mkdir()
            db = Database(tmp, create=True)
            with db.transaction():
                db.add_fields(schema)
            manifest = {"format_version": storage.FORMAT_VERSION, "dim": dim, "metric": metric, "index": index,
                        "index_params": params, "encoder": encoder_name,
                        "space": getattr(encoder_obj, "space", None), "schema": schema, "indexes": indexes,
                        "text_index": text_index}
            if multivector is not False and multivector is not None:
                options = {} if multivector is True else multivector
                manifest["layer"] = create_layer("multivector", tmp, dim, metric, options, owner)
                if "index_dim" in manifest["layer"]:
                    manifest["index_dim"] = int(manifest["layer"].pop("index_dim"))
            with db.transaction():
                integrity.record_settings(db, manifest)
            db.close()
            storage.write_manifest(tmp, manifest)
        return cls(folder, manifest, readonly=False, encoder=encoder_obj)

    @classmethod
    def open(cls, path: str | os.PathLike, *, readonly: bool = False, encoder: Any = None,
             allow_foreign_encoder: bool = False) -> "Collection":
        """Open an existing collection. ``readonly=True`` never takes the writer lock (writes then raise);
        ``encoder`` overrides the model named in the manifest for ``texts=``: a model of the collection's space, or one
        aligned to it for queries only (a distilled student, a compatibly trained or mapped model; its map is applied
        to the queries). Any other is a :class:`~embedlab.errors.ConflictError` naming both models, unless
        ``allow_foreign_encoder=True`` (same width required)."""
        folder = integrity.check_path(path, "Collection.open")
        manifest = storage.read_manifest(folder)
        if manifest.get("backend") == "milvus":
            from embedlab.index.collection.milvus import MilvusCollection

            return MilvusCollection.open(folder, manifest, readonly=readonly, encoder=encoder,
                                         allow_foreign_encoder=allow_foreign_encoder)
        integrity.check_manifest(manifest, folder)
        enc, alignment = open_encoder(encoder, manifest, "Collection.open", allow_foreign_encoder)
        return cls(folder, manifest, readonly=readonly, encoder=enc, query_alignment=alignment)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.count()} items"
        return f"Collection({str(self.path)!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_kind!r}, {state})"

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        """(Re)build every in-memory structure from the database, the vectors file and the newest index checkpoint."""
        def read():
            snap = self._db.snapshot(-1)
            return snap[0]["generation"], snap

        settings, fields, records, self._version = leases.leased_snapshot(self._lease, read, self._db.generation)
        self._generation, self._n, self._seq = settings["generation"], settings["n_rows"], settings["seq"]
        self._id_kind = settings["id_kind"]
        self._vfile = VectorFile(self.path, self._generation, self._vdim)
        self._vectors = self._vfile.view(self._n)
        self._meta = MetadataTable(declared=self._manifest.get("schema") or ())  # declared fields never widen
        self._fields: list[tuple[str, str, str]] = []
        self._mirror = Mirror()
        self._verified = 0  # rows checked by integrity.check_rows in this process
        self._index = self._load_index()
        self._ingest(records, fields)
        self._payload = PayloadIndex(self._meta, self._manifest.get("indexes"))
        self._payload.load(self.path, (self._generation, self._seq), self._n)
        self._text = TextIndex() if self._manifest.get("text_index") else None  # filled on first use (_text_index)
        self._replayed_rows = self._index.ntotal - self._saved_rows  # re-added past the newest checkpoint
        if self._layer is not None:
            self._layer.open(self._n, self._generation)

    def _heal(self) -> None:
        """After a crash the newest checkpoint can be far behind, and every open would replay the missing rows into
        the index: the first writer open (not ``readonly``) that replayed at least :data:`HEAL_MIN_ROWS` writes a
        fresh checkpoint, taking the writer lock for that moment only (skipped while another writer holds it)."""
        if self._replayed_rows < HEAL_MIN_ROWS or not self._index.worth_writing:
            return
        try:
            self._lock.acquire("Collection.open")
        except ConflictError:
            return  # the running writer checkpoints on its own schedule and at close
        try:
            self._refresh()
            self._maybe_checkpoint(force=True)
            self._remove_stale()
        finally:
            self._lock.release()

    def _load_index(self) -> VectorIndex:
        for _ in range(3):
            vanished = False
            for rows, path in reversed(storage.index_files(self.path, self._generation)):
                if rows <= self._n:
                    try:
                        index = kinds.load_index(self.index_kind, self._vdim, self.metric, self.index_params, path,
                                                    lambda: self._vectors)
                    except DataFormatError:
                        if not path.exists():  # the writer replaced it by a newer checkpoint meanwhile: list again
                            vanished = True
                            break
                        continue  # a damaged checkpoint is only a cache: rebuild from the vectors
                    if index.ntotal == rows:
                        self._saved_rows = rows
                        return index
            if not vanished:
                break
        self._saved_rows = 0
        return kinds.make_index(self.index_kind, self._vdim, self.metric, self.index_params, lambda: self._vectors)

    def _ingest(self, records: list[tuple], fields: list[tuple[str, str, str]]) -> None:
        """Apply database rows (new rows appended, old rows' ``deleted`` flag or metadata updated) to memory and the
        index."""
        self._meta.sync_fields(fields)  # new fields, and int fields another process widened to float
        self._fields = fields
        old_rows = self._mirror.rows
        self._mirror.ingest(records)
        self._meta.ingest(fields, [r for r in records if r[0] >= old_rows or not r[2]])  # new rows, rewritten rows
        self._n = max(self._n, self._mirror.rows)
        self._vectors = self._vfile.view(self._n)
        if self._verified < self._n:
            integrity.check_rows(self._vectors, self._verified, self._n, self._vfile.path)
            self._verified = self._n
        if self._index.ntotal < self._n:
            for start in range(self._index.ntotal, self._n, 65536):
                self._index.add(np.asarray(self._vectors[start : min(self._n, start + 65536)]))

    def _refresh(self) -> None:
        """Catch up with another process's committed writes (cheap when nothing changed)."""
        version = self._db.data_version()
        if version == self._version:
            return
        settings, fields, records, version = self._db.snapshot(self._seq)  # one consistent read
        if settings["generation"] != self._generation:
            self._load()
            return
        self._version = version
        self._n, self._id_kind = settings["n_rows"], settings["id_kind"]
        self._ingest(records, fields)
        self._seq = settings["seq"]
        if self._layer is not None:
            self._layer.open(self._n, self._generation)

    def _begin(self, owner: str, write: bool = False) -> None:
        if self._closed:
            raise InvalidInputError(f"{owner}: the collection must be open, got a closed one. Reopen it with Collection.open.")
        if write:
            if self._readonly:
                raise UnsupportedError(f"{owner}: this collection was opened with readonly=True; open it without to write.")
            if self._lock.fd is None:
                self._lock.acquire(owner)
                self._refresh()
                self._remove_stale()
            elif self._stale:
                self._remove_stale()
        elif self._lock.fd is None:
            self._refresh()

    # ------------------------------------------------------------------ writes
    def add(self, ids: Any, vectors: Any = None, *, texts: list[str] | None = None,
            metadata: list[dict] | None = None) -> None:
        """Add new items. ``ids``: list of str or int (unique, not yet present — use :meth:`upsert` to replace);
        ``vectors``: float ``[n, dim]``, or ``texts`` encoded with the collection's encoder (texts given with
        vectors are stored as they are); ``metadata``: one dict per id (or ``None``)."""
        self._write("Collection.add", ids, vectors, texts, metadata, upsert=False)

    def upsert(self, ids: Any, vectors: Any = None, *, texts: list[str] | None = None,
               metadata: list[dict] | None = None) -> None:
        """Like :meth:`add`, replacing (vector, metadata and text of) ids that already exist."""
        self._write("Collection.upsert", ids, vectors, texts, metadata, upsert=True)

    def _write(self, owner: str, ids: Any, vectors: Any, texts: Any, metadata: Any, *, upsert: bool) -> None:
        with self._mutex:
            self._begin(owner, write=True)
            ids, kind = check_ids(ids, owner, self._id_kind)
            n = len(ids)
            if texts is not None:
                texts = check_texts(texts, n, owner)
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
            existing = self._mirror.existing(ids)
            if existing and not upsert:
                raise ConflictError(
                    f"{owner}: ids must not exist yet, got {len(existing)} existing (first: {existing[0]!r}). "
                    "Use upsert to replace them, or delete them first.")
            if n == 0:
                return
            replaced = self._mirror.rows_of(existing)
            start = self._n
            rows = np.arange(start, start + n, dtype=np.int64)
            seq = self._seq + 1
            self._vfile.write(start, vecs)
            if self._layer is not None:
                self._layer.append(start, payload)
            with self._db.transaction():
                self._db.add_fields(prepared.new_fields)
                self._db.widen_fields(prepared.widened)
                self._db.insert(rows, ids, texts, prepared.rows, seq)
                if len(replaced):
                    self._db.mark_deleted(replaced, seq)
                self._db.set(n_rows=start + n, seq=seq, id_kind=kind)
            self._version = self._db.data_version()
            self._seq, self._id_kind = seq, kind
            self._meta.apply(prepared, rows)
            self._fields = self._db.fields()
            self._mirror.append(start, ids, replaced)
            end = self._n = start + n
            self._vectors = self._vfile.view(end)
            self._verified = end  # rows this writer checked (check_vectors) and wrote itself
            self._index.add(vecs)
            if self._text is not None and self._text.rows == start:  # else caught up from the database when used
                self._text.add(start, texts if texts is not None else [None] * n)
            if self._layer is not None:
                self._layer.open(self._n, self._generation)
            self._maybe_checkpoint()

    def delete(self, ids: Any = None, *, filter: Filter | str | dict | None = None) -> int:
        """Delete items by id (every id must exist) or every item matching ``filter`` (give one of the two); returns
        how many were deleted. Search stops returning them at once; :meth:`compact` frees space."""
        owner = "Collection.delete"
        with self._mutex:
            self._begin(owner, write=True)
            if (ids is None) == (filter is None):
                raise InvalidInputError(f"{owner}: give ids or filter, got {'both' if ids is not None else 'neither'}. "
                                        "Delete by id with delete(ids), or by metadata with delete(filter=...).")
            if ids is not None:
                ids, _ = check_ids(ids, owner, self._id_kind)
                self._mirror.require(ids, owner)
                rows = self._mirror.rows_of(ids)
            else:
                rows = self._allowed(as_filter(filter, owner), owner).rows
                ids = self._mirror.ids_of(rows).tolist()
            if not ids:
                return 0
            seq = self._seq + 1
            with self._db.transaction():
                self._db.mark_deleted(rows, seq)
                self._db.set(seq=seq)
            self._version = self._db.data_version()
            self._seq = seq
            self._mirror.delete(ids)
            return len(ids)

    def compact(self, *, progress: ProgressCallback | None = None) -> None:
        """Drop deleted rows for good: rewrite vectors and index as a new generation, then switch atomically.
        An IVF index is re-trained (``nlist`` auto-sized to the current count unless it was given).
        ``progress(done, total)`` is called per chunk of rows; returning ``False`` cancels (nothing changes)."""
        owner = "Collection.compact"
        with self._mutex:
            self._begin(owner, write=True)
            keep = np.flatnonzero(self._mirror.alive.view())
            gen = self._generation + 1
            vfile = VectorFile(self.path, gen, self._vdim)
            written = [0]
            index = kinds.make_index(self.index_kind, self._vdim, self.metric, self.index_params,
                                        lambda: vfile.view(written[0]))
            try:
                vfile.write(0, np.zeros((0, self._vdim), np.float32))
                for s in range(0, len(keep), 65536):
                    report_progress(progress, s, len(keep))
                    chunk = np.asarray(self._vectors[keep[s : s + 65536]])
                    vfile.write(s, chunk)
                    written[0] = s + len(chunk)
                    index.add(chunk)
                report_progress(progress, len(keep), len(keep))
                self._write_index(index, gen)
                if self._layer is not None:
                    self._layer.compact(keep, gen)
                text = self._text_index().compact(keep) if self._text is not None else None
            except BaseException:
                self._remove_stale()  # the unfinished generation's files
                raise
            seq = self._seq + 1
            with self._db.transaction():
                m = self._db.renumber(seq)
                self._db.set(generation=gen, n_rows=m, seq=seq)
            self._load()  # moves this object's lease to the new generation
            if text is not None:
                self._text = text
            self._remove_stale()

    def _remove_stale(self) -> None:
        """(Writer) delete crash leftovers, and the files of every other generation that no reader holds a lease
        on; the rest are remembered in ``_stale`` and retried at the next write, compaction or close."""
        storage.remove_stale(self.path, self._generation, self._n)
        files = storage.generation_files(self.path)
        if self._layer is not None:
            for generation, paths in self._layer.generation_files(self.path).items():
                files.setdefault(generation, []).extend(paths)
        for generation in leases.lease_generations(self.path):
            files.setdefault(generation, [])
        files.pop(self._generation, None)
        self._stale = [g for g, paths in sorted(files.items()) if not leases.try_remove(self.path, g, paths)]

    def _maybe_checkpoint(self, force: bool = False) -> None:
        unsaved = self._index.ntotal - self._saved_rows
        if unsaved and (force or unsaved >= max(CHECKPOINT_MIN_ROWS, self._saved_rows // 2)):
            if self._write_index(self._index, self._generation):
                self._saved_rows = self._index.ntotal
                storage.remove_stale(self.path, self._generation, self._n)
        if force:  # at close (and _heal): the state the next open will read, so the next open can adopt the file
            self._payload.save(self.path, (self._generation, self._seq))

    def _write_index(self, index: VectorIndex, generation: int) -> bool:
        if not index.worth_writing:
            return False
        with replacing(self.path / f"index-{generation}-{index.ntotal}.faiss") as tmp:
            index.write(tmp)
        return True

    def close(self) -> None:
        """Save the ANN index checkpoint (writers), release the writer lock and the database. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            try:
                if self._lock.fd is not None:
                    self._maybe_checkpoint(force=True)
                    if self._stale:
                        self._remove_stale()
            finally:
                self._lease.release()
                self._lock.release()
                self._db.close()
                self._closed = True

    # ------------------------------------------------------------------ reads
    def count(self, filter: Filter | str | dict | None = None) -> int:
        """Number of live (not deleted) items, or of those matching ``filter``."""
        owner = "Collection.count"
        with self._mutex:
            self._begin(owner)
            if filter is None:
                return len(self._mirror)
            return self._allowed(as_filter(filter, owner), owner).count

    def stats(self) -> dict:
        """Sizes: ``count`` live items and ``rows`` stored (deleted rows stay until :meth:`compact`); ``disk_bytes``
        (every file in the folder) and ``disk_bytes_per_vector`` per live item; ``ram_bytes_per_vector``, what the
        search index holds in memory per row (float rows or codes, graph links, list ids, amortised centroids; the
        float32 vectors file is memory-mapped and paged by the OS, so it is not counted); ``index``, ``index_params``."""
        with self._mutex:
            self._begin("Collection.stats")
            count, disk = len(self._mirror), 0
            for p in self.path.rglob("*"):
                with contextlib.suppress(FileNotFoundError):  # a stale file another process is removing
                    disk += p.stat().st_size if p.is_file() else 0
            return {"count": count, "rows": self._n, "dim": self.dim, "metric": self.metric, "index": self.index_kind,
                    "index_params": dict(self.index_params), "disk_bytes": disk,
                    "disk_bytes_per_vector": disk / count if count else 0.0,
                    "ram_bytes_per_vector": float(self._index.ram_bytes_per_vector())}

    def get(self, ids: Any) -> list[dict]:
        """``[{"id", "vector" (float32 [dim], as stored: unit rows for cosine), "metadata", "text"}]`` per id;
        every id must exist."""
        owner = "Collection.get"
        with self._mutex:
            self._begin(owner)
            ids, _ = check_ids(ids, owner, self._id_kind)
            self._mirror.require(ids, owner)
            rows = self._mirror.rows_of(ids).tolist()
            texts = self._db.texts(rows) if rows else {}
            return [{"id": i, "vector": np.array(self._vectors[r]), "metadata": self._meta.row(r), "text": texts.get(r)}
                    for i, r in zip(ids, rows)]

    def contains(self, ids: Any) -> np.ndarray:
        """bool ``[n]``: which ``ids`` are live items (a cheap existence check: no vectors, no database read)."""
        owner = "Collection.contains"
        with self._mutex:
            self._begin(owner)
            ids, _ = check_ids(ids, owner, self._id_kind)
            return np.fromiter((i in self._mirror.row_of for i in ids), dtype=bool, count=len(ids))

    def scroll(self, filter: Filter | str | dict | None = None, limit: int = 100, cursor: Any = None, *,
               include: tuple[str, ...] = ()) -> tuple[list[dict], Any]:
        """One page of the live items matching ``filter``, in ascending id order: ``(items, next_cursor)``; each item
        is ``{"id": ...}`` plus the ``include`` names (``"metadata"``, ``"text"``, ``"vector"``). Pass
        ``next_cursor`` back as ``cursor`` for the next page; it is ``None`` after the last page. The cursor is the
        last id listed, so concurrent writes never make a page repeat or skip an id that stayed (see
        :mod:`embedlab.index.collection.operations`). ``limit``: at most
        :data:`~embedlab.index.collection.operations.MAX_SCROLL_LIMIT`."""
        owner = "Collection.scroll"
        with self._mutex:
            self._begin(owner)
            node = as_filter(filter, owner)
            limit = check_int(limit, owner, "limit", high=operations.MAX_SCROLL_LIMIT)
            cursor = operations.check_cursor(cursor, self._id_kind, owner)
            include = operations.check_include(include, owner, vectors_supported=self._layer is None)
            mask = self._allowed(node, owner).mask if node is not None else None
            rows, more = operations.scroll(self._mirror, mask, limit, cursor)
            ids = self._mirror.ids_of(rows).tolist()
            _, extra = operations.fetch(rows.tolist(), include, self._meta, self._db, self._vectors)
            return [{"id": i, **e} for i, e in zip(ids, extra)], (ids[-1] if more else None)

    def update_metadata(self, ids: Any, metadata: list[dict | None], *, replace: bool = False) -> None:
        """Change the metadata of existing items without resending vectors (durable at once, visible to readers).
        ``metadata``: one dict per id; its keys are set (a ``None`` value removes the key) and other keys are kept,
        or, with ``replace=True``, the dict becomes the item's whole metadata. Values are validated and typed as in
        :meth:`add` (new fields are inferred, an int field widens to float); a rejected call changes nothing."""
        owner = "Collection.update_metadata"
        with self._mutex:
            self._begin(owner, write=True)
            ids, _ = check_ids(ids, owner, self._id_kind)
            if not isinstance(replace, bool):
                raise InvalidInputError(f"{owner}: replace must be a bool, got {replace!r}.")
            prepared = self._meta.prepare(metadata, len(ids), owner)
            self._mirror.require(ids, owner)
            if not ids:
                return
            rows = self._mirror.rows_of(ids)
            merged = prepared._replace(rows=operations.merge_updates(
                self._meta.rows(rows.tolist()), metadata, prepared.rows, replace))
            seq = self._seq + 1
            with self._db.transaction():
                self._db.add_fields(prepared.new_fields)
                self._db.widen_fields(prepared.widened)
                self._db.update_metadata(rows, merged.rows, seq)
                self._db.set(seq=seq)
            self._version = self._db.data_version()
            self._seq = seq
            self._meta.apply(merged, rows)
            self._fields = self._db.fields()

    def search(self, queries: Any, k: int = 10, *, filter: Filter | str | None = None, ef: int | None = None,
               offset: int = 0, min_score: float | None = None, include: tuple[str, ...] = (),
               oversample: int | None = None, mode: str = "dense", fusion: str = "rrf",
               weights: tuple[float, float] | None = None, query_texts: list[str] | None = None,
               rerank: Any = None, rerank_candidates: int = 100,
               rerank_weights: tuple[float, float] | None = None) -> Hits:
        """Top-``k`` items per query (``k`` at most :data:`MAX_K`; ``nq * (k + offset)`` at most :data:`MAX_RESULTS`
        per call, else split the batch; the work is bounded by the stored rows). ``queries``: float ``[nq, dim]``
        (``nq = 0`` gives empty ``[0, k]`` hits) or a list of texts (needs an encoder);
        ``filter``: a :class:`Filter` or a filter string; ``ef``: efSearch (hnsw) / nprobe (ivf) before the planner
        raises it for selective filters; ``offset``: skip the best ``offset`` hits (paging, at most
        :data:`~embedlab.index.collection.operations.MAX_SEARCH_OFFSET`); ``min_score``: hits scoring below it
        become padding; ``include``: any of ``"text"``, ``"metadata"``, ``"vector"`` to fill ``Hits.payload``;
        ``oversample``: candidates per hit for this call in a collection that rescores (``funnel=`` or ``codec=``).

        ``mode``: ``"dense"`` (the vectors), ``"sparse"`` (BM25 over the stored texts) or ``"hybrid"`` (both, each
        bringing ``max(k + offset, HYBRID_DEPTH)`` candidates, fused by ``fusion``: ``"rrf"``, ``"weighted"`` or
        ``"dbsf"`` (:func:`~embedlab.index.retrievers.fusion.fuse`) with ``weights = (dense, sparse)``); the last
        two need ``text_index=True`` and the query texts (``queries`` as texts, or ``query_texts`` beside query
        vectors). The filter applies to both sides before fusion; items without a stored text are found by the dense
        side only, and ``Hits.strategy`` says how many. ``rerank``: a reranker (:mod:`embedlab.index.retrievers.rerank`: an
        :class:`~embedlab.models.CrossEncoder` or a :class:`~embedlab.index.MaxSimReranker`) that re-orders
        the first ``rerank_candidates`` hits of the mode by (query, stored text); its scores replace the first
        stage's, or, with ``rerank_weights = (first stage, reranker)``, both are fused (DBSF) over the candidates
        (:func:`~embedlab.index.retrievers.rerank.rerank`).

        Returns :class:`~embedlab.types.Hits` with the caller's ids (object array, ``None``-padded), float32 scores
        (``-inf``-padded), what ran per query (``strategy``), and the payload when ``include`` asks for one."""
        owner = "Collection.search"
        with self._mutex:
            self._begin(owner)
            k = check_k(k, owner)
            ef = check_ef(ef, owner, self.index_kind)
            node = as_filter(filter, owner)
            if node is not None:
                self._meta.validate(node, owner)
            offset = operations.check_offset(offset, owner)
            min_score = operations.check_min_score(min_score, owner)
            include = operations.check_include(include, owner, vectors_supported=self._layer is None)
            if oversample is not None:
                oversample = self._check_oversample(oversample, owner)
            check_choice(mode, MODES, owner, "mode")
            check_choice(fusion, FUSIONS, owner, "fusion")
            weights = self._check_weights(weights, mode, owner)
            want = k + offset
            first = want if rerank is None else reranking.check_reranker(rerank, rerank_candidates, want, owner)
            rerank_weights = reranking.check_rerank_weights(rerank_weights, rerank, owner)
            texts = self._query_texts(queries, query_texts, mode, rerank, owner)
            allowed = self._allowed(node, owner)
            cap = lambda c: min(c, max(self._n, 1))  # never rank more than the stored rows; padded back below
            if mode == "sparse":
                check_results(len(texts), want, owner)
                scores, rows = self._sparse(texts, cap(first), allowed)
                strategy = ["bm25"] * len(texts)
            else:
                scores, rows, strategy = self._dense(queries, cap(first if mode == "dense" else max(first, HYBRID_DEPTH)),
                                                     want, allowed, ef, oversample, owner)
                if mode == "hybrid":
                    if len(texts) != len(rows):
                        raise InvalidInputError(f"{owner}: query_texts must hold one text per query, got {len(texts)} "
                                                f"for {len(rows)} queries.")
                    sparse_scores, sparse_rows = self._sparse(texts, rows.shape[1], allowed)
                    fused = fuse([Hits(rows, scores), Hits(sparse_rows, sparse_scores)], cap(first), fusion,
                                 weights=weights)
                    scores, rows = fused.scores, fused.ids
                    untexted = (~self._text.has_text(rows)).sum(axis=1)
                    strategy = [f"hybrid:{fusion}({s}+bm25)" + (f" ({c} without text: dense only)" if c else "")
                                for s, c in zip(strategy, untexted.tolist())]
            if rerank is not None:
                scores, rows, notes = reranking.rerank(rerank, texts, scores, rows, self._db.texts, owner,
                                                       rerank_weights)
                how = "rerank" if rerank_weights is None else "rerank-fused"
                strategy = [f"{s}+{how}({type(rerank).__name__}){n}" for s, n in zip(strategy, notes)]
            scores, rows = scores[:, :want], rows[:, :want]
            if rows.shape[1] < want:
                scores, rows = pad_hits(scores, rows, want)
            if offset or min_score is not None:
                scores, rows = operations.page(scores, rows, offset, min_score)
            payload = operations.payloads(rows, include, self._meta, self._db, self._vectors) if include else None
            return Hits(self._mirror.ids_of(rows), scores, tuple(strategy), payload)

    def _dense(self, queries: Any, work: int, want: int, allowed: Allowed | None, ef: int | None,
               oversample: int | None, owner: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The vector side of :meth:`search`: ``work`` hits per query (scores, rows, strategies)."""
        q, q_payload = self._search_queries(queries, owner)
        check_results(len(q), want, owner)
        candidates = work if self._layer is None else min(self._layer.candidates(work), max(self._n, 1))
        scores, rows, strategy = self._search_rows(q, candidates, allowed, ef, oversample)
        if self._layer is not None:
            scores, rows = self._layer.rerank(q_payload, rows, work)
            strategy = [s + "+rerank" for s in strategy]
        return scores, rows, strategy

    def _sparse(self, texts: list[str], k: int, allowed: Allowed | None) -> tuple[np.ndarray, np.ndarray]:
        """BM25 over the stored texts of the allowed rows: ``(scores, rows)`` ``[nq, k]``."""
        live = self._mirror.alive.view()
        return self._text_index().search(texts, k, live if allowed is None else allowed.mask, live,
                                         (self._generation, self._seq))

    def _text_index(self) -> TextIndex:
        """The text index, caught up with every stored row (built from the database on first use)."""
        self._text.extend(self._n, self._db.texts_between)
        return self._text

    def _query_texts(self, queries: Any, query_texts: Any, mode: str, rerank: Any, owner: str) -> list[str] | None:
        """The query texts a sparse, hybrid or reranked search needs (``queries`` when they are texts)."""
        given = isinstance(queries, (list, tuple)) and len(queries) > 0 and all(isinstance(t, str) for t in queries)
        if query_texts is not None:
            query_texts = check_texts(query_texts, None, owner)
        if mode == "dense" and rerank is None:
            return None
        if mode != "dense" and self._text is None:
            raise InvalidInputError(
                f"{owner}: mode={mode!r} searches the collection's text index, got a collection created without one. "
                "Create it with Collection.create(path, dim=..., text_index=True) and add texts= with the items.")
        texts = list(queries) if given else query_texts
        if texts is None:
            raise InvalidInputError(
                f"{owner}: {'rerank' if mode == 'dense' else f'mode={mode!r}'} needs the query texts, got query vectors "
                "only. Pass queries as a list of texts, or query_texts=[...] beside the vectors.")
        return texts

    def _check_weights(self, weights: Any, mode: str, owner: str) -> tuple[float, float] | None:
        if weights is None:
            return None
        if mode != "hybrid":
            raise InvalidInputError(f"{owner}: weights= weighs the dense and sparse sides of mode='hybrid', got it with "
                                    f"mode={mode!r}. Drop weights, or pass mode='hybrid'.")
        return check_weight_pair(weights, owner, "weights", "dense, sparse")

    def plan(self, k: int = 10, *, filter: Filter | str | None = None, ef: int | None = None, nq: int = 1) -> dict:
        """What :meth:`search` would do for ``nq`` queries with this filter: strategy, allowed rows, selectivity,
        ef, candidates."""
        owner = "Collection.plan"
        with self._mutex:
            self._begin(owner)
            k, ef = check_k(k, owner), check_ef(ef, owner, self.index_kind)
            node = as_filter(filter, owner)
            paths: dict[str, str] = {}
            allowed = self._allowed(node, owner, paths)
            out = planner.plan(self._index, k, self._n, None if allowed is None else allowed.count, ef,
                               self._links(), nq).as_dict()
            return {**out, "filter": paths}

    def _allowed(self, node: Filter | None, owner: str, paths: dict[str, str] | None = None) -> Allowed | None:
        """The live rows ``node`` allows, through the payload indexes (``paths``: how each field was used); ``None``
        when nothing is filtered and nothing is deleted."""
        alive = self._mirror.alive.view()
        if node is None:
            return None if len(self._mirror) == self._n else Allowed(self._n, mask=alive)
        allowed = self._payload.allowed(node, self._n, owner, paths)
        if len(self._mirror) == self._n:
            return allowed
        if "rows" in allowed.__dict__:
            return Allowed(self._n, rows=allowed.rows[alive[allowed.rows]])
        return Allowed(self._n, mask=allowed.mask & alive)

    def _links(self) -> int:
        return 2 * self.index_params.get("M", 16)

    def _check_oversample(self, value, owner: str) -> int:
        if "funnel" not in self.index_params and not self.index_params.get("rescore"):
            raise InvalidInputError(f"{owner}: oversample applies to collections that rescore candidates (created with "
                                    f"funnel= or codec=), got oversample={value!r} for index={self.index_kind!r}. "
                                    "Drop oversample, or raise ef for a graph.")
        return check_oversample(value, owner)

    def _search_rows(self, q: np.ndarray, k: int, allowed: Allowed | None, ef: int | None,
                     oversample: int | None = None):
        p = planner.plan(self._index, k, self._n, None if allowed is None else allowed.count, ef, self._links(), len(q))
        if len(q) == 0 or self._n == 0:
            return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64),
                    [p.strategy] * len(q))
        return planner.execute(p, self._index, self._vectors, q, k, self.metric, allowed, oversample=oversample)

    @property
    def id_kind(self) -> str | None:
        """``"str"`` or ``"int"``: the kind of ids stored (``None`` before the first add)."""
        return self._id_kind

    @property
    def schema(self) -> dict[str, str]:
        """Metadata fields and their types, ``{name: "str" | "int" | "float" | "bool" | "list[str]"}``."""
        with self._mutex:
            self._begin("Collection.schema")
            return dict(self._meta.schema)
