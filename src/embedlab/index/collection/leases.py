"""Generation leases: a reader's snapshot keeps the files of its generation on disk until it lets go.

Every open :class:`~embedlab.index.collection.Collection` (reader or writer) holds a shared ``flock`` on
``lease-<g>.lock`` while its snapshot uses generation ``g`` (vectors, index checkpoints, a layer's files). The
writer deletes an old generation's files only while it holds that file's lock exclusively (non-blocking); when a
reader still holds it, the files stay and a later cleanup (the writer's next write, compaction, open or close)
deletes them. Like LMDB's reader table or SQLite WAL's read marks, but per generation, and with no shared memory.

The race: a reader reads ``g`` from the database, then the writer commits ``g + 1`` and (seeing no lease) deletes
``g``'s files, then the reader takes its lease. So a reader takes the lease first and checks the database's
generation again afterwards (:func:`leased_snapshot`): if it moved on, it retries on the newer generation. Once the
lease is held while ``g`` is still current, the writer's later exclusive attempt fails and the files stay.

``flock`` locks belong to an open file description, so two collections in one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from embedlab.errors import ConflictError

LEASE_PATTERN = re.compile(r"lease-(\d+)\.lock")


def lease_path(folder: Path, generation: int) -> Path:
    return folder / f"lease-{generation}.lock"


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder or file: lock what exists read-only, else go without (nobody deletes there)
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None


class Lease:
    """The shared lease of one collection object on the generation its snapshot uses (at most one at a time)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.generation: int | None = None
        self._fd: int | None = None

    def hold(self, generation: int) -> None:
        """Hold ``generation``'s lease (blocking briefly while a writer deletes that generation), then let go of
        the previous one."""
        if generation == self.generation and self._fd is not None:
            return
        fd = _open(lease_path(self.folder, generation))
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        self._close()
        self._fd, self.generation = fd, generation

    def release(self) -> None:
        self._close()
        self.generation = None

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def leased_snapshot(lease: Lease, read: Callable[[], tuple[int, Any]], current: Callable[[], int],
                    attempts: int = 100) -> Any:
    """A database snapshot whose generation's lease is held: ``read()`` returns ``(generation, snapshot)`` from one
    read transaction, ``current()`` reads the committed generation afresh. The lease is taken after the read and
    the generation checked again: a reader that read ``g`` just before a compaction switched to ``g + 1`` (whose
    files the writer may already have deleted) reads again, on ``g + 1``."""
    for _ in range(attempts):
        generation, snapshot = read()
        lease.hold(generation)
        if current() == generation:
            return snapshot
    raise ConflictError(f"Collection.open: the generation must settle while opening, got {attempts} compactions "
                        "meanwhile. Retry the open.")


def try_remove(folder: Path, generation: int, files: Iterable[Path]) -> bool:
    """Delete ``files`` (of ``generation``, not the current one) and the lease file if no reader holds the lease;
    ``False`` (nothing deleted) when one does. Only the writer calls this."""
    path = lease_path(folder, generation)
    fd = _open(path)
    if fd is None:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        for p in files:
            p.unlink(missing_ok=True)
        path.unlink(missing_ok=True)  # a reader that opened it meanwhile re-checks the generation and moves on
        return True
    finally:
        os.close(fd)


def lease_generations(folder: Path) -> set[int]:
    """Generations that have a lease file in ``folder``."""
    out = set()
    for p in folder.glob("lease-*.lock"):
        m = LEASE_PATTERN.fullmatch(p.name)
        if m:
            out.add(int(m.group(1)))
    return out
