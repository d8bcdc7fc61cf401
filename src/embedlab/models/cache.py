"""An on-disk embedding cache keyed by the encoder's fingerprint and a hash of the texts and options.

Benchmarks encode big corpora once and reuse the vectors; a changed model, text or option is a new key.
Arrays are stored as ``.npy`` (never pickled), written aside and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from embedlab.files import replacing
from embedlab.types import MultiVectors


def default_root() -> Path:
    """The cache folder: ``$EMBEDLAB_CACHE`` if set (read at call time, never at import), else ``.cache/embeddings``."""
    return Path(os.environ.get("EMBEDLAB_CACHE", ".cache/embeddings"))


def _key(encoder, texts: list[str], options: dict) -> str:
    h = hashlib.sha256()
    h.update(encoder.fingerprint.encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _save(path: Path, array: np.ndarray) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def cached_encode(encoder, texts: list[str], *, root: str | Path | None = None, **options) -> np.ndarray:
    """``encoder.encode(texts, **options)``, read from / written to the cache folder ``root`` (default: :func:`default_root`)."""
    root = Path(root) if root is not None else default_root()
    path = root / f"{_key(encoder, texts, {'kind': 'encode', **options})}.npy"
    if path.exists():
        return np.load(path)
    root.mkdir(parents=True, exist_ok=True)
    vectors = encoder.encode(texts, **options)
    _save(path, vectors)
    return vectors


def cached_encode_tokens(encoder, texts: list[str], *, root: str | Path | None = None, **options) -> MultiVectors:
    """``encoder.encode_tokens(texts, **options)`` through the cache (vectors memory-mapped on reads)."""
    root = Path(root) if root is not None else default_root()
    stem = _key(encoder, texts, {"kind": "encode_tokens", **options})
    vec_path, off_path = root / f"{stem}.vectors.npy", root / f"{stem}.offsets.npy"
    if vec_path.exists() and off_path.exists():
        return MultiVectors(np.load(vec_path, mmap_mode="r"), np.load(off_path))
    root.mkdir(parents=True, exist_ok=True)
    mv = encoder.encode_tokens(texts, **options)
    _save(vec_path, mv.vectors)
    _save(off_path, mv.offsets)
    return mv
