"""The collections of the server's data folder: one sub-folder each, opened for writing at start-up.

A collection remembers its model the way the library does (the encoder's folder in its manifest); the server
matches that folder with a served model to know which one encodes the collection's texts. Creation and deletion
are atomic: a collection folder appears whole (:meth:`Collection.create`) and disappears by one rename.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from pathlib import Path

from embedlab.errors import ConflictError, EmbedlabError
from embedlab.files import fsync_dir
from embedlab.index import Collection
from embedlab.serve.errors import not_found
from embedlab.serve.models import ServedModel

log = logging.getLogger("embedlab.serve")
TRASH = ".trash"


class Store:
    def __init__(self, root: Path, models: dict[str, ServedModel]) -> None:
        self.root = root
        self.models = models
        self._by_source = {m.source: m for m in reversed(list(models.values()))}  # the first served name wins
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(root / TRASH, ignore_errors=True)  # deletions a crash interrupted
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                self._collections[folder.name] = self._open(folder)
            except EmbedlabError as exc:  # a damaged or foreign folder is reported, not served, never changed
                log.error("not serving %s: %s", folder, exc)

    def _open(self, folder: Path) -> Collection:
        probe = Collection.open(folder, readonly=True)
        model = self._by_source.get(probe.encoder_name)
        probe.close()
        return Collection.open(folder, encoder=None if model is None else model.encoder)

    def names(self) -> list[str]:
        return sorted(self._collections)

    def get(self, name: str) -> Collection:
        col = self._collections.get(name)
        if col is None:
            raise not_found(f"collection {name!r} does not exist; the server has {self.names()[:20]}. Create it "
                                "with POST /v1/collections.")
        return col

    def model_of(self, col: Collection) -> ServedModel | None:
        return self._by_source.get(col.encoder_name)

    def create(self, name: str, model: ServedModel | None, *, dim: int, metric: str, index: str | None, params: dict,
               multivector, schema: dict | None, indexes: list[str] | None = None,
               text_index: bool = False) -> Collection:
        with self._lock:
            if name in self._collections or (self.root / name).exists():
                raise ConflictError(f"collection {name!r} already exists; delete it first or choose another name.")
            encoder = None if model is None else model.encoder
            col = Collection.create(self.root / name, dim=dim, metric=metric, index=index, encoder=encoder,
                                    schema=schema, indexes=indexes, text_index=text_index, multivector=multivector,
                                    **params)
            self._collections[name] = col
            return col

    def delete(self, name: str) -> None:
        with self._lock:
            col = self.get(name)
            del self._collections[name]
            col.close()
            trash = self.root / TRASH
            trash.mkdir(exist_ok=True)
            target = trash / f"{name}-{uuid.uuid4().hex}"
            (self.root / name).rename(target)  # gone in one step; the files are removed after
            fsync_dir(self.root)
            shutil.rmtree(target, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for col in self._collections.values():
                col.close()
            self._collections.clear()
