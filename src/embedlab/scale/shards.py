"""Encoded corpora on disk: Parquet shards (``id`` string, ``vector`` float32 list, ``metadata`` JSON string) and a
``manifest.json`` that names the model (its fingerprint), the corpus, the shard size and every finished shard.

A shard is written whole (to a temporary name, fsynced, renamed) and only then entered in the manifest, which is
itself replaced atomically: after a crash the folder holds finished shards and a manifest that lists exactly
them, so a resumed run re-encodes at most the shard it was writing. A folder written for another model, corpus
or shard size is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from embedlab.errors import ConflictError, DataFormatError
from embedlab.files import atomic_write

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def source_signature(files: list[Path]) -> list[dict]:
    """What identifies the corpus: each file's name, size and modification time."""
    return [{"file": str(f.resolve()), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION or not isinstance(manifest.get("shards"), list):
            raise ValueError("unknown format")
    except (ValueError, AttributeError) as exc:
        raise DataFormatError(f"shards: {path} must be an embedlab shard manifest (format {FORMAT_VERSION}), got an "
                              f"unreadable one ({exc}). Remove the folder to start over.") from None
    return manifest


def open_output(folder: Path, *, model: dict, source: list[dict], shard_size: int) -> dict:
    """The manifest to continue in ``folder`` (a new one when the folder holds none); a folder written for another
    model, corpus or shard size raises :class:`ConflictError`."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    if manifest is None:
        if any(folder.iterdir()):
            raise ConflictError(f"shards: {folder} must be empty or an embedlab shard folder, got other files. "
                                "Choose a new --out folder.")
        manifest = {"format_version": FORMAT_VERSION, "model": model, "source": source, "shard_size": shard_size,
                    "shards": [], "complete": False}
        write_manifest(folder, manifest)
        return manifest
    for key, want in (("model", model), ("source", source), ("shard_size", shard_size)):
        if manifest[key] != want:
            what = {"model": "model (fingerprint)", "source": "corpus (its files)", "shard_size": "shard size"}
            raise ConflictError(f"shards: {folder} was written for another {what[key]}: it holds {manifest[key]!r}, "
                                f"this run has {want!r}. Use a new --out folder, or the same model and corpus.")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def write_shard(folder: Path, index: int, ids: list[str], vectors: np.ndarray, metadata: list[dict]) -> dict:
    """Write shard ``index`` atomically; returns its manifest entry (name, rows, sha256)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"id": pa.array(ids, pa.string()), "vector": column,
                      "metadata": pa.array([json.dumps(m, sort_keys=True) for m in metadata], pa.string())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    atomic_write(folder / shard_name(index), data)
    return {"index": index, "name": shard_name(index), "rows": len(ids), "sha256": hashlib.sha256(data).hexdigest()}


def read_shards(folder: str | Path, *, fingerprint: str | None = None) -> Iterator[tuple[list[str], np.ndarray, list[dict]]]:
    """``(ids, float32 [n, dim], metadata)`` per finished shard, in corpus order; each shard's checksum is checked,
    and ``fingerprint`` (when given) must be the manifest's model."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise DataFormatError(f"shards: {folder} must hold a {MANIFEST}, got none. Encode the corpus first.")
    if fingerprint is not None and manifest["model"]["fingerprint"] != fingerprint:
        raise ConflictError(f"shards: {folder} holds vectors of model {manifest['model']['fingerprint']}, got a "
                            f"reader for {fingerprint}. Encode the corpus with this model into a new folder.")
    for entry in sorted(manifest["shards"], key=lambda e: e["index"]):
        data = (folder / entry["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise DataFormatError(f"shards: {folder / entry['name']} does not match its checksum in the manifest; "
                                  "delete it and its manifest entry, then resume the encoding.")
        table = pq.read_table(io.BytesIO(data))
        dim = manifest["model"]["dim"]
        vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        yield (table.column("id").to_pylist(), np.ascontiguousarray(vectors, dtype=np.float32),
               [json.loads(m) for m in table.column("metadata").to_pylist()])
