"""Embedding spaces and the alignment record: which index an encoder's queries may search.

A vector is only comparable with vectors of the same *space*: the model that encoded them (its weights and
pooling; not the runtime, precision or batch). :func:`folder_space` names the space of a model folder by a hash
of its files, so the torch and ONNX (fp32 or int8) runtimes of one folder share a space, and a fine-tuned model
does not share its base's.

An encoder may also be *aligned* to another model's space (:class:`Alignment`), in two ways:

- its own vectors approximate that space (a LEAF student distilled from a teacher, Vujanic & Rueckstiess 2025,
  "LEAF: Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations"; or a model
  trained with a backward-compatibility term, Shen et al. 2020, "Towards Backward-Compatible Representation
  Learning"): ``weight`` is None;
- a linear map takes its vectors there (``y = W x + b``, then unit length; fitted by
  :func:`embedlab.train.compat.fit_map`): ``weight [d_target, d_own]`` float32, ``bias [d_target]`` or None.

The record is saved in the model folder as ``embedlab_alignment.json`` (and the map as
``embedlab_alignment.safetensors``); sentence-transformers ignores both files. A collection built by the target
model accepts the aligned encoder for *queries* and applies the map to them
(:meth:`embedlab.index.collection.base.CollectionBase._encode`), so the old index is searched without
re-encoding it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.files import atomic_write, hash_file

RECORD = "embedlab_alignment.json"
MAP_FILE = "embedlab_alignment.safetensors"
_NOT_MODEL = {"checkpoints", ".embedlab-onnx"}  # folders inside a model folder that are not the model
_NOT_MODEL_FILES = {RECORD, MAP_FILE, "README.md"}


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x [n, d]`` with each row scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def folder_space(path: str | Path, pooling: str) -> str:
    """The space of the model in folder ``path`` pooled by ``pooling``: sha256 of its files (paths and bytes; run
    checkpoints, ONNX builds, README and the alignment record left out; a file path: its bytes) and the pooling,
    16 hex."""
    path = Path(path)
    h = hashlib.sha256(b"space-v1\0" + pooling.encode())
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_MODEL_FILES
        and not _NOT_MODEL & set(p.relative_to(path).parts[:-1]))
    for f in files:
        if f != path:  # a single file (a prebuilt ONNX model) is its bytes, whatever its name
            h.update(str(f.relative_to(path)).encode() + b"\0")
        hash_file(h, f)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Alignment:
    """An encoder's alignment to the space ``space`` of the model ``model`` (see the module docstring).

    ``weight [d_target, d_own]`` and ``bias [d_target]`` (float32) are the map, both None when the encoder's own
    vectors are already in that space; ``method`` says how it was obtained (``"distilled"``, ``"compatible"``,
    ``"procrustes"``, ``"ridge"``) and ``fit`` holds its held-out figures (e.g. mean cosine)."""

    space: str
    model: str
    method: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    fit: dict | None = None

    @property
    def dim(self) -> int | None:
        """The target space's width when there is a map, else None (the encoder's own width)."""
        return None if self.weight is None else int(self.weight.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors [n, d_own]`` float32 -> ``[n, d_target]`` unit float32 (a copy; the identity without a map)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.weight is None:
            return vectors.copy()
        if vectors.ndim != 2 or vectors.shape[1] != self.weight.shape[1]:
            raise InvalidInputError(f"Alignment.apply: vectors must have shape (n, {self.weight.shape[1]}), got "
                                    f"{vectors.shape}. Encode with the model this map was fitted for.")
        out = vectors @ self.weight.T
        if self.bias is not None:
            out += self.bias
        return np.ascontiguousarray(unit_rows(out))

    def write(self, folder: str | Path) -> None:
        """Write the record (and map) into the model ``folder`` (each file written aside, then renamed into place;
        the map first, so a record never names a missing map)."""
        from safetensors.numpy import save

        folder = Path(folder)
        record = {"space": self.space, "model": self.model, "method": self.method, "fit": self.fit,
                  "map": None if self.weight is None else {"file": MAP_FILE, "bias": self.bias is not None}}
        if self.weight is not None:
            tensors = {"weight": np.ascontiguousarray(self.weight, dtype=np.float32)}
            if self.bias is not None:
                tensors["bias"] = np.ascontiguousarray(self.bias, dtype=np.float32)
            atomic_write(folder / MAP_FILE, save(tensors))
        atomic_write(folder / RECORD, json.dumps(record, indent=2).encode())

    @classmethod
    def read(cls, folder: Path, own_dim: int) -> "Alignment | None":
        """The record in ``folder``, or None when it has none; a damaged record or a map that does not take
        ``own_dim`` vectors is a :class:`~embedlab.errors.DataFormatError`."""
        file = folder / RECORD
        if not file.is_file():
            return None
        try:
            record = json.loads(file.read_text())
            space, model, method = str(record["space"]), str(record["model"]), str(record["method"])
            weight = bias = None
            if record.get("map") is not None:
                from safetensors.numpy import load_file

                tensors = load_file(str(folder / MAP_FILE))
                weight = np.asarray(tensors["weight"], dtype=np.float32)
                bias = tensors.get("bias")
                if weight.ndim != 2 or weight.shape[1] != own_dim or (
                        bias is not None and bias.shape != (weight.shape[0],)):
                    raise ValueError(f"map of shape {weight.shape} (bias {None if bias is None else bias.shape}) "
                                     f"for a model of width {own_dim}")
        except Exception as exc:  # json, safetensors (its own error type) and the shape checks
            raise DataFormatError(f"Encoder.load: {file} must hold an alignment record (space, model, method and an "
                                  f"optional map of shape (d, {own_dim})), got an error reading it: {exc}. Re-run "
                                  "the alignment (embedlab.train.compat.align) or delete the file.") from None
        return cls(space, model, method, weight, bias, record.get("fit"))
