"""The on-disk layout of a collection folder, and its crash-safety protocol.

Layout (nothing pickled)::

    manifest.json              static configuration, format_version; written once, aside then renamed
                               (every write-aside-then-rename goes through :mod:`embedlab.files`)
    collection.sqlite (+ -wal) SQLite in WAL mode, the source of truth for everything mutable:
                                 settings(key, value): n_rows, generation, seq, id_kind
                                 fields(name, type, col): the metadata schema
                                 items(row, id, deleted, seq, text, f_0, f_1, ...): one row per stored vector
    vectors-<generation>.f32   raw little-endian float32 [capacity, dim]; rows >= n_rows are garbage
    index-<generation>-<n>.faiss  a checkpoint of the ANN index covering rows 0..n-1 (derived data)
    payload.npz                the payload (metadata) indexes as of one (generation, seq), saved at close (derived
                               data; see :mod:`embedlab.index.collection.payload`)
    writer.lock                flock()ed by the single writer process
    lease-<generation>.lock    flock()ed shared by every open snapshot of that generation (see .leases)

Protocol for one acknowledged batch: (1) the vectors are written past ``n_rows`` and fsynced; (2) one
SQLite transaction inserts the rows, any new fields and the new ``n_rows``. A crash before (2) commits
leaves ``n_rows`` unchanged, so the batch is wholly absent; after it, wholly present. The faiss index is a
cache: on open, the newest checkpoint is loaded and rows past it are re-added from the vectors file; after a
crash that left many rows unsaved, the first writer open writes a fresh checkpoint (``Collection._heal``,
``HEAL_MIN_ROWS``) so later opens do not replay them again.
``compact`` writes a new generation of files, then switches ``generation`` in one transaction; the old
generation's files are deleted once no reader holds its lease (:mod:`embedlab.index.collection.leases`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from embedlab.errors import ConflictError, DataFormatError, NotFoundError, UnsupportedError
from embedlab.files import atomic_write

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "collection.sqlite"
LOCK = "writer.lock"
_SQL_CHUNK = 900  # rows per SQL "IN (...)" (SQLite's historical bound on bound parameters is 999)
_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER", "list[str]": "TEXT"}


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write(folder / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise NotFoundError(
            f"Collection.open: path must be a collection folder with {MANIFEST}, got {str(folder)!r} without one. "
            "Create it with Collection.create(path, dim=...).")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"Collection.open: {path} must be a JSON manifest, got unreadable content ({exc}).") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise DataFormatError(f"Collection.open: {path} must hold an object with an int format_version, got {manifest!r:.80}.")
    if manifest["format_version"] > FORMAT_VERSION:
        raise UnsupportedError(
            f"Collection.open: format_version must be <= {FORMAT_VERSION}, got {manifest['format_version']} in {path}. "
            "Upgrade embedlab to open this collection.")
    missing = [k for k in ("dim", "metric", "index", "index_params") if k not in manifest]
    if missing:
        raise DataFormatError(f"Collection.open: {path} must define {missing}, got keys {sorted(manifest)}.")
    return manifest


class WriterLock:
    """An exclusive, non-blocking ``flock`` on ``writer.lock``: one writer per folder, across processes."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self.fd: int | None = None

    def acquire(self, owner: str) -> None:
        if self.fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConflictError(
                f"{owner}: the collection must have a single writer, got another writer holding {self.path} "
                f"(pid {holder}). Close that collection first, or only search from this one.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Database:
    """The SQLite side: settings, schema and items. Every write method runs inside :meth:`transaction`."""

    def __init__(self, folder: Path, *, create: bool) -> None:
        path = self.path = folder / DATABASE
        if not create and not path.is_file():
            raise DataFormatError(f"Collection.open: {path} must exist beside the manifest, got no such file.")
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            if create:
                with self.transaction():
                    self.conn.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value)")
                    self.conn.execute("CREATE TABLE IF NOT EXISTS fields (name TEXT PRIMARY KEY, type TEXT, col TEXT)")
                    self.conn.execute("CREATE TABLE IF NOT EXISTS items (row INTEGER PRIMARY KEY, id, "
                                      "deleted INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, text TEXT)")
                    self.conn.execute("CREATE INDEX IF NOT EXISTS items_seq ON items(seq)")
                    for key, value in (("n_rows", 0), ("generation", 0), ("seq", 0), ("id_kind", None)):
                        self.conn.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (key, value))
            self._check()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise DataFormatError(f"Collection.open: {path} must be a collection database, got: {exc}") from None
        except DataFormatError:
            self.conn.close()
            raise

    def _check(self) -> None:
        """The tables exist and the settings have their types (a damaged or edited database is refused here)."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted({"settings", "fields", "items"} - tables)
        if missing:
            raise DataFormatError(f"Collection.open: {self.path} must hold the tables fields, items and settings, got "
                                  f"none named {missing}. Restore the folder from a backup.")
        settings = self.settings()
        for key in ("n_rows", "generation", "seq"):
            value = settings.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataFormatError(f"Collection.open: setting {key} in {self.path} must be an int >= 0, got "
                                      f"{value!r:.80}. Restore the folder from a backup.")
        if settings.get("id_kind") not in (None, "str", "int"):
            raise DataFormatError(f"Collection.open: setting id_kind in {self.path} must be 'str', 'int' or null, got "
                                  f"{settings.get('id_kind')!r:.80}. Restore the folder from a backup.")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def snapshot(self, since_seq: int) -> tuple[dict, list, list, int]:
        """``(settings, fields, rows changed after since_seq, data_version)`` read in one read transaction, so a
        concurrent writer's commit is either wholly seen or not at all."""
        self.conn.execute("BEGIN")
        try:
            return self.settings(), self.fields(), self.rows(since_seq), self.data_version()
        finally:
            self.conn.execute("COMMIT")

    def settings(self) -> dict[str, Any]:
        return dict(self.conn.execute("SELECT key, value FROM settings").fetchall())

    def generation(self) -> int:
        """The committed generation, read afresh."""
        return self.conn.execute("SELECT value FROM settings WHERE key = 'generation'").fetchone()[0]

    def data_version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def fields(self) -> list[tuple[str, str, str]]:
        return self.conn.execute("SELECT name, type, col FROM fields ORDER BY rowid").fetchall()

    def set(self, **values: Any) -> None:
        self.conn.executemany("UPDATE settings SET value = ? WHERE key = ?", [(v, k) for k, v in values.items()])

    def add_fields(self, new_fields: dict[str, str]) -> None:
        start = len(self.fields())
        for j, (name, ftype) in enumerate(new_fields.items()):
            col = f"f_{start + j}"
            self.conn.execute(f"ALTER TABLE items ADD COLUMN {col} {_SQL_TYPES[ftype]}")
            self.conn.execute("INSERT INTO fields VALUES (?, ?, ?)", (name, ftype, col))

    def insert(self, rows: np.ndarray, ids: list, texts: list | None, items: list[dict], seq: int) -> None:
        fields = self.fields()
        cols = ", ".join(["row", "id", "seq", "text", *(c for _, _, c in fields)])
        marks = ", ".join("?" * (4 + len(fields)))
        data = []
        for j, row in enumerate(rows.tolist()):
            item = items[j]
            values = [_to_sql(item.get(name), ftype) for name, ftype, _ in fields]
            data.append((row, ids[j], seq, texts[j] if texts is not None else None, *values))
        self.conn.executemany(f"INSERT INTO items ({cols}) VALUES ({marks})", data)

    def mark_deleted(self, rows: np.ndarray, seq: int) -> None:
        self.conn.executemany("UPDATE items SET deleted = 1, seq = ? WHERE row = ?", [(seq, int(r)) for r in rows])

    def rows(self, since_seq: int = -1) -> list[tuple]:
        """``(row, id, deleted, *field values)`` ordered by row, for rows changed after ``since_seq``."""
        fields = self.fields()
        cols = ", ".join(["row", "id", "deleted", *(c for _, _, c in fields)])
        out = self.conn.execute(f"SELECT {cols} FROM items WHERE seq > ? ORDER BY row", (since_seq,)).fetchall()
        if any(t == "list[str]" for _, t, _ in fields):
            pos = [3 + j for j, (_, t, _) in enumerate(fields) if t == "list[str]"]
            out = [tuple(json.loads(v) if j in pos and v is not None else v for j, v in enumerate(r)) for r in out]
        return out

    def texts(self, rows: list[int]) -> dict[int, str | None]:
        """``{row: text}`` for ``rows`` (any number: asked for in chunks of SQLite's bound-parameter limit)."""
        out: dict[int, str | None] = {}
        for s in range(0, len(rows), _SQL_CHUNK):
            part = rows[s : s + _SQL_CHUNK]
            marks = ",".join("?" * len(part))
            out.update(self.conn.execute(f"SELECT row, text FROM items WHERE row IN ({marks})", part).fetchall())
        return out

    def texts_between(self, start: int, end: int) -> dict[int, str | None]:
        """``{row: text}`` for rows ``start <= row < end``."""
        return dict(self.conn.execute("SELECT row, text FROM items WHERE row >= ? AND row < ?", (start, end)).fetchall())

    def renumber(self, seq: int) -> int:
        """Drop deleted items and renumber the rest ``0..m-1`` in row order; returns ``m`` (inside a transaction)."""
        cols = [r[1] for r in self.conn.execute("PRAGMA table_info(items)").fetchall()]
        rest = ", ".join(c for c in cols if c not in ("row", "seq"))
        self.conn.execute(f"CREATE TABLE items_new AS SELECT ROW_NUMBER() OVER (ORDER BY row) - 1 AS row, ? AS seq, "
                          f"{rest} FROM items WHERE deleted = 0", (seq,))
        self.conn.execute("DROP TABLE items")
        decl = ", ".join(["row INTEGER PRIMARY KEY", "id", "deleted INTEGER NOT NULL DEFAULT 0", "seq INTEGER NOT NULL",
                          "text TEXT", *(f"{c} {t}" for _, t, c in self._typed_fields())])
        self.conn.execute(f"CREATE TABLE items ({decl})")
        names = ", ".join(["row", "seq", *(c for c in cols if c not in ("row", "seq"))])
        self.conn.execute(f"INSERT INTO items ({names}) SELECT {names} FROM items_new")
        self.conn.execute("DROP TABLE items_new")
        self.conn.execute("CREATE INDEX items_seq ON items(seq)")
        return self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def _typed_fields(self) -> list[tuple[str, str, str]]:
        return [(n, _SQL_TYPES[t], c) for n, t, c in self.fields()]

    def widen_fields(self, names: list[str]) -> None:
        """Int fields ``names`` become float fields (stored ints are read back as floats; see ``from_sql``)."""
        self.conn.executemany("UPDATE fields SET type = 'float' WHERE name = ? AND type = 'int'",
                              [(n,) for n in names])

    def update_metadata(self, rows: np.ndarray, items: list[dict], seq: int) -> None:
        """Rewrite every field value of stored ``rows`` (``seq`` bumped so readers re-read them)."""
        fields = self.fields()
        sets = ", ".join([*(f"{c} = ?" for _, _, c in fields), "seq = ?"])
        self.conn.executemany(f"UPDATE items SET {sets} WHERE row = ?",
                              [(*(_to_sql(item.get(name), ftype) for name, ftype, _ in fields), seq, row)
                               for row, item in zip(rows.tolist(), items)])

    def close(self) -> None:
        self.conn.close()


def _to_sql(value: Any, ftype: str) -> Any:
    if value is None:
        return None
    if ftype == "list[str]":
        return json.dumps(value)
    if ftype == "bool":
        return int(value)
    return value


def from_sql(value: Any, ftype: str) -> Any:
    if value is None:
        return None
    if ftype == "bool":
        return bool(value)
    if ftype == "float":
        return float(value)
    return value


class VectorFile:
    """``vectors-<generation>.f32``: appended in place, read through a read-only memory map of ``n`` rows."""

    def __init__(self, folder: Path, generation: int, dim: int) -> None:
        self.path = folder / f"vectors-{generation}.f32"
        self.dim = dim
        self._map: np.ndarray | None = None
        self._n = -1

    def write(self, start: int, vectors: np.ndarray) -> None:
        """Write rows ``start..`` and fsync (the rows count only once SQLite commits the new ``n_rows``)."""
        data = np.ascontiguousarray(vectors, dtype="<f4")
        mode = "r+b" if self.path.exists() else "w+b"
        with open(self.path, mode) as fh:
            fh.seek(start * self.dim * 4)
            fh.write(data.tobytes())
            fh.flush()
            os.fsync(fh.fileno())

    def view(self, n: int) -> np.ndarray:
        """float32 ``[n, dim]`` (a memory map; empty array when ``n == 0``)."""
        if n != self._n:
            if n == 0:
                self._map = np.zeros((0, self.dim), dtype=np.float32)
            else:
                size = self.path.stat().st_size if self.path.exists() else 0
                if size < n * self.dim * 4:
                    raise DataFormatError(
                        f"Collection.open: {self.path.name} must hold {n} rows of {self.dim} float32, got {size} bytes.")
                self._map = np.memmap(self.path, dtype="<f4", mode="r", shape=(n, self.dim))
            self._n = n
        return self._map


def index_files(folder: Path, generation: int) -> list[tuple[int, Path]]:
    """Index checkpoints of ``generation`` as ``(rows covered, path)``, newest last."""
    out = []
    for p in folder.glob(f"index-{generation}-*.faiss"):
        m = re.fullmatch(rf"index-{generation}-(\d+)\.faiss", p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def generation_files(folder: Path) -> dict[int, list[Path]]:
    """The vectors file and index checkpoints on disk, by generation."""
    out: dict[int, list[Path]] = {}
    for p in folder.iterdir():
        m = re.fullmatch(r"vectors-(\d+)\.f32", p.name) or re.fullmatch(r"index-(\d+)-\d+\.faiss", p.name)
        if m:
            out.setdefault(int(m.group(1)), []).append(p)
    return out


def remove_stale(folder: Path, generation: int, n_rows: int) -> None:
    """Delete what a crash left behind in the current ``generation`` (writes aside never renamed, checkpoints
    past ``n_rows``) and its checkpoints older than the newest; only the writer calls this. Other generations'
    files go through :func:`embedlab.index.collection.leases.try_remove` (readers may still use them)."""
    keep_index = [p for rows, p in index_files(folder, generation) if rows <= n_rows][-1:]
    for p in folder.iterdir():
        stale = ".tmp" in p.name  # a write aside (embedlab.files.replacing) that never got renamed
        stale |= bool(re.fullmatch(rf"index-{generation}-\d+\.faiss", p.name)) and p not in keep_index
        if stale:
            p.unlink(missing_ok=True)
