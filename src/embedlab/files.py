"""The one atomic write: write aside, fsync, rename into place, fsync the folder; the one JSON-lines reader; and
the one streamed file hash.

A reader sees either the old file (or folder) or the new one, never half of either, and a crash at any
moment leaves one of the two on disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of folder ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync a file, or every file and folder under a folder (deepest first)."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        return
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            with open(Path(root) / name, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(root)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file, or a folder to fill); on a clean exit make it
    durable and rename it over ``path``. On an exception the temporary is removed and ``path`` is untouched.

    A folder cannot be renamed over a non-empty folder, so an existing one is first renamed aside and removed
    after the swap: a crash in between leaves the old folder beside (``<name>.old``) and the new one in place.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        fsync_tree(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            _remove(old)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        _remove(tmp)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Durably replace the file ``path`` with ``data`` (see :func:`replacing`)."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def hash_file(h, path: str | os.PathLike) -> None:
    """Feed the bytes of the file ``path`` to the hashlib object ``h``, 1 MiB at a time."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file, streamed; a line that is not a JSON
    object raises :class:`~embedlab.errors.DataFormatError` naming the file and line."""
    import json

    from embedlab.errors import DataFormatError

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: expected one JSON object per line, got invalid JSON "
                                      f"({exc.msg}).") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}.")
            yield lineno, row
