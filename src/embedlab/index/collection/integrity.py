"""What opening a collection checks before trusting the folder: never a raw exception, never a silent wrong answer.

- :func:`check_path`: ``path`` is a str or ``os.PathLike``.
- :func:`check_manifest`: every manifest value has its type and a known value (``dim`` a positive int, a known
  metric and index, index parameters the index accepts, a known layer), else a ``DataFormatError`` naming the file.
- :func:`settings_of` / :func:`check_settings`: the settings that decide how vectors were prepared and scored
  (``dim``, ``metric``, ``index``, the indexed width, the layer, a codec) are copied into the database at create
  time; an open whose manifest disagrees (an edited metric or index) is refused. Tunable parameters
  (``ef_search``, ``nprobe``, ``M``...) are not compared: editing them changes speed or recall, not meaning.
- :func:`check_rows`: every stored row is scanned once per process as it is first loaded (open, refresh): a value
  that is NaN, infinite or beyond :data:`~embedlab.index.collection.inputs.MAX_NORM` (which ``add`` never
  stores) means a damaged vectors file, refused. Cost: one ``min`` and one ``max`` pass, ~20 ms per 100k x 384 rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.index.collection import storage
from embedlab.index.collection.inputs import MAX_NORM, METRICS
from embedlab.index.search import kinds
from embedlab.index.search.compressed import CODEC_PARAMS

_FIX = "Restore it from a backup, or recreate the collection from its source data."


def check_path(path: Any, owner: str) -> Path:
    """``path`` as a ``Path`` (a non-empty str or an ``os.PathLike``)."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or (isinstance(path, str) and not path):
        got = repr(path) if isinstance(path, str) else type(path).__name__
        raise InvalidInputError(f"{owner}: path must be a folder path (str or os.PathLike), got {got}.")
    return Path(path)


def check_manifest(manifest: dict, folder: Path) -> None:
    """Types and values of a manifest read by :func:`~embedlab.index.collection.storage.read_manifest`."""
    path = folder / storage.MANIFEST

    def bad(key: str, expect: str, value: Any = None) -> DataFormatError:
        got = manifest.get(key) if value is None else value
        return DataFormatError(f"Collection.open: {key} in {path} must be {expect}, got {got!r:.100}. {_FIX}")

    for key in ("dim", "index_dim"):
        value = manifest.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, "a positive int")
    if manifest["metric"] not in METRICS:
        raise bad("metric", f"one of {list(METRICS)}")
    if manifest["index"] not in kinds.index_kinds():
        raise bad("index", f"one of {kinds.index_kinds()}")
    params = manifest["index_params"]
    if not isinstance(params, dict):
        raise bad("index_params", "an object")
    try:
        kinds.check_params(manifest["index"], dict(params), "Collection.open", manifest["metric"],
                           manifest.get("index_dim", manifest["dim"]))
    except (InvalidInputError, TypeError, ValueError) as exc:
        raise bad("index_params", f"parameters the {manifest['index']!r} index accepts ({exc})") from None
    if manifest.get("encoder") is not None and not isinstance(manifest["encoder"], str):
        raise bad("encoder", "a model name, a folder or null")
    layer = manifest.get("layer")
    if layer is not None and not (isinstance(layer, dict) and isinstance(layer.get("name"), str)):
        raise bad("layer", "an object with a name")
    if manifest.get("schema") is not None and not isinstance(manifest["schema"], dict):
        raise bad("schema", "an object")
    indexes = manifest.get("indexes")
    if indexes is not None and not (isinstance(indexes, list) and all(isinstance(f, str) for f in indexes)):
        raise bad("indexes", "a list of field names or null")
    if not isinstance(manifest.get("text_index", False), bool):
        raise bad("text_index", "true or false")


def settings_of(manifest: dict) -> dict:
    """The settings that decide what the stored vectors mean (compared between manifest and database)."""
    params = manifest["index_params"]
    return {"dim": manifest["dim"], "metric": manifest["metric"], "index": manifest["index"],
            "index_dim": manifest.get("index_dim", manifest["dim"]),
            "layer": (manifest.get("layer") or {}).get("name"),
            "codec": {k: params[k] for k in CODEC_PARAMS if k in params} if isinstance(params, dict) else None}


def record_settings(db: storage.Database, manifest: dict) -> None:
    """Store :func:`settings_of` in the database (at create time, inside a transaction)."""
    db.conn.execute("INSERT OR REPLACE INTO settings VALUES ('created_with', ?)",
                    (json.dumps(settings_of(manifest), sort_keys=True),))


def check_settings(db: storage.Database, manifest: dict, folder: Path) -> None:
    """Refuse a manifest whose meaning-bearing settings differ from those recorded at create time (collections
    created before this check have none recorded and are not compared)."""
    raw = db.settings().get("created_with")
    if raw is None:
        return
    try:
        stored = json.loads(raw)
    except (TypeError, ValueError):
        raise DataFormatError(f"Collection.open: {folder / storage.DATABASE} must hold valid settings, got "
                              f"{raw!r:.80}. {_FIX}") from None
    now = settings_of(manifest)
    for key, value in now.items():
        if stored.get(key) != value:
            raise DataFormatError(
                f"Collection.open: {key} in {folder / storage.MANIFEST} must be {stored.get(key)!r} as the collection "
                f"was created with (recorded in {storage.DATABASE}), got {value!r}. Restore the manifest: the stored "
                "vectors were prepared and indexed for the recorded settings.")


def check_rows(vectors: np.ndarray, start: int, end: int, path: Path, chunk: int = 65536) -> None:
    """Rows ``start .. end - 1`` of ``vectors`` are finite with every value within ``MAX_NORM``."""
    for s in range(start, end, chunk):
        block = vectors[s : min(end, s + chunk)]
        lo, hi = block.min(), block.max()  # NaN propagates: the test below fails for it too
        if not (-MAX_NORM <= lo and hi <= MAX_NORM):
            bad = s + int(np.flatnonzero(~(np.abs(np.asarray(block)) <= MAX_NORM).all(axis=1))[0])
            raise DataFormatError(
                f"Collection.open: {path.name} must hold finite float32 values of magnitude <= {MAX_NORM:.0e}, got "
                f"NaN, inf or a huge value in row {bad}. The file is damaged: {_FIX}")
