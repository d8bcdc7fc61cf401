"""Moving vectors between stores: shards into a collection, and whole collections between backends.

* :func:`add_shards` streams a shard folder (:mod:`embedlab.scale.shards`) into any collection, a shard at a time,
  with progress; a collection that names an encoder refuses shards of another model (the manifest's fingerprint).
* :func:`shard_matrix` gathers a shard folder into float32 ``[n, dim]`` in a given id order (what
  ``evaluate_retrieval(corpus_embeddings=...)`` takes).
* :func:`copy_collection` copies a collection to a new folder on another backend — ``embedlab export --to milvus``
  (local -> Milvus) and ``embedlab import`` (Milvus -> local) — in id order, ``batch_size`` items at a time, with
  progress. It is resumable: after each batch the last id copied is recorded in ``<dest>/transfer.json``
  (atomically, after the batch is acknowledged), so a rerun after a kill continues after that id; batches are
  written with ``upsert``, so the one batch in flight at the kill is simply written again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import ConflictError, DataFormatError, InvalidInputError, UnsupportedError
from embedlab.files import atomic_write
from embedlab.params import check_choice, check_int
from embedlab.scale import shards
from embedlab.types import ProgressCallback, report_progress

TRANSFER = "transfer.json"  # the resume record inside the destination folder


def _bar(desc: str, total: int | None, show_progress: bool | None):
    from tqdm.auto import tqdm

    shown = show_progress if show_progress is not None else sys.stderr.isatty()
    return tqdm(desc=desc, total=total, unit="item", disable=not shown)


def _shard_model(folder: Path, collection: Any, owner: str) -> dict:
    manifest = shards.read_manifest(folder)
    if manifest is None:
        raise DataFormatError(f"{owner}: {folder} must be a shard folder with a {shards.MANIFEST}, got none. Encode "
                              "the corpus first (embedlab encode --corpus ... --out ...).")
    model = manifest["model"]
    if model["dim"] != collection.dim:
        raise InvalidInputError(f"{owner}: shards must have the collection's width {collection.dim}, got "
                                f"{model['dim']} in {folder}. Use a collection created with dim={model['dim']}.")
    encoder = collection.encoder if collection.encoder_name is not None else None
    if encoder is not None and encoder.fingerprint != model["fingerprint"]:
        raise ConflictError(f"{owner}: shards must come from the collection's encoder (fingerprint "
                            f"{encoder.fingerprint}), got vectors of model {model['fingerprint']} ({model['source']}) "
                            f"in {folder}. Encode the corpus with the collection's model.")
    return manifest


def add_shards(collection: Any, folder: str | os.PathLike, *, upsert: bool = False,
               progress: ProgressCallback | None = None, show_progress: bool | None = None) -> int:
    """Add every finished shard in ``folder`` to ``collection`` (ids, vectors, metadata), one shard per call;
    returns the number of items added. ``upsert=True`` replaces ids that exist (a rerun after a failure)."""
    owner = "add_shards"
    folder = Path(folder)
    manifest = _shard_model(folder, collection, owner)
    total = sum(e["rows"] for e in manifest["shards"])
    write = collection.upsert if upsert else collection.add
    done = 0
    bar = _bar("add shards", total, show_progress)
    try:
        for ids, vectors, metadata in shards.read_shards(folder, fingerprint=manifest["model"]["fingerprint"]):
            write(ids, vectors, metadata=metadata)
            done += len(ids)
            bar.update(len(ids))
            report_progress(progress, done, total)
    finally:
        bar.close()
    return done


def shard_matrix(folder: str | os.PathLike, ids: list[str], *, fingerprint: str | None = None) -> np.ndarray:
    """float32 ``[len(ids), dim]``: the shards' vectors in the order of ``ids`` (each must be in the shards)."""
    folder = Path(folder)
    where = {i: r for r, i in enumerate(ids)}
    out: np.ndarray | None = None
    seen = np.zeros(len(ids), bool)
    for shard_ids, vectors, _ in shards.read_shards(folder, fingerprint=fingerprint):
        if out is None:
            out = np.zeros((len(ids), vectors.shape[1]), np.float32)
        rows = np.fromiter((where.get(i, -1) for i in shard_ids), np.int64, len(shard_ids))
        keep = rows >= 0
        out[rows[keep]] = vectors[keep]
        seen[rows[keep]] = True
    if out is None or not seen.all():
        missing = ids[int(np.flatnonzero(~seen)[0])] if len(ids) else None
        raise InvalidInputError(f"shard_matrix: every id must be in the shards of {folder}, got "
                                f"{int((~seen).sum())} missing (first: {missing!r}). Encode the whole corpus.")
    return out


def copy_collection(source: str | os.PathLike, dest: str | os.PathLike, *, backend: str, uri: str | None = None,
                    name: str | None = None, index: str | None = None, batch_size: int = 1000,
                    progress: ProgressCallback | None = None, show_progress: bool | None = None,
                    **index_params: Any) -> dict:
    """Copy the collection at ``source`` into a new collection folder ``dest`` on ``backend`` (``"milvus"`` or
    ``"local"``), resuming a copy that stopped (see the module docstring). The destination gets the source's dim,
    metric, encoder and schema, and its index and index parameters unless ``index`` (with ``index_params``) is
    given. Returns ``{"copied", "resumed_after", "count", "dest"}``."""
    from embedlab.index import Collection

    owner = "copy_collection"
    check_choice(backend, ("local", "milvus"), owner, "backend")
    batch_size = check_int(batch_size, owner, "batch_size", high=10_000)
    source, dest = Path(source), Path(dest)
    src = Collection.open(source, readonly=True)
    try:
        if src.multivector:
            raise UnsupportedError(f"{owner}: source must be a single-vector collection, got the multi-vector "
                                   f"collection {source}. Re-add its token vectors to the new backend instead.")
        record = _resume_record(source, dest, owner)
        if record is None:
            settings = {"index": index or src.index_kind, **(index_params if index else src.index_params)}
            if backend == "milvus":
                settings.pop("train_size", None)
            extra = {"backend": "milvus", "uri": uri, "name": name} if backend == "milvus" else {}
            Collection.create(dest, dim=src.dim, metric=src.metric, encoder=src.encoder_name, schema=src.schema,
                              **extra, **settings).close()
            record = {"source": str(source.resolve()), "cursor": None, "copied": 0, "complete": False}
            atomic_write(dest / TRANSFER, (json.dumps(record) + "\n").encode())
        resumed_after = record["cursor"]
        total = src.count()
        with Collection.open(dest) as out:
            bar = _bar(f"copy to {backend}", total, show_progress)
            bar.update(record["copied"])
            try:
                cursor = record["cursor"]
                while not record["complete"]:
                    items, cursor = src.scroll(limit=batch_size, cursor=cursor, include=("vector", "text", "metadata"))
                    _write(out, items)
                    record = dict(record, cursor=items[-1]["id"] if items else record["cursor"],
                                  copied=record["copied"] + len(items), complete=cursor is None)
                    atomic_write(dest / TRANSFER, (json.dumps(record) + "\n").encode())
                    bar.update(len(items))
                    report_progress(progress, record["copied"], total)
            finally:
                bar.close()
            count = out.count()
        return {"copied": record["copied"], "resumed_after": resumed_after, "count": count, "dest": str(dest)}
    finally:
        src.close()


def _resume_record(source: Path, dest: Path, owner: str) -> dict | None:
    """The resume record of an earlier copy into ``dest`` (``None``: a new copy; ``dest`` must then be new)."""
    path = dest / TRANSFER
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return None
    if not path.is_file() and (dest / "manifest.json").is_file():  # killed between creating dest and the record
        from embedlab.index import Collection

        with Collection.open(dest, readonly=True) as out:
            empty = out.count() == 0
        if empty:
            record = {"source": str(source.resolve()), "cursor": None, "copied": 0, "complete": False}
            atomic_write(path, (json.dumps(record) + "\n").encode())
            return record
    if not path.is_file():
        raise ConflictError(f"{owner}: dest must be a new folder or an unfinished copy, got {dest}, which holds "
                            f"other files. Choose a new destination.")
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or {"source", "cursor", "copied", "complete"} - set(record):
            raise ValueError("missing keys")
    except ValueError as exc:
        raise DataFormatError(f"{owner}: {path} must be a copy's resume record, got an unreadable one ({exc}). "
                              "Remove the destination folder to start over.") from None
    if record["source"] != str(source.resolve()):
        raise ConflictError(f"{owner}: dest {dest} holds a copy of {record['source']}, got source {source}. Choose "
                            "a new destination.")
    return record


def _write(out: Any, items: list[dict]) -> None:
    """Upsert one batch of scrolled items; items with and without a stored text go in two calls."""
    for with_text in (True, False):
        part = [i for i in items if (i["text"] is not None) == with_text]
        if part:
            out.upsert([i["id"] for i in part], np.stack([i["vector"] for i in part]),
                       texts=[i["text"] for i in part] if with_text else None,
                       metadata=[i["metadata"] for i in part])
