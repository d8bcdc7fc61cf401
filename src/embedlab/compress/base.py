"""The :class:`Codec` contract shared by every vector codec, and its persistence.

A codec maps float32 vectors ``[n, d]`` to compact codes and back:

* ``fit(vectors)`` learns whatever the codec needs (ranges, codebooks) and returns ``self``;
  learned state lives in attributes ending in ``_`` (``dim_`` always);
* ``encode(vectors)`` -> codes ``[n, code_width]`` (dtype per codec: ``uint8`` for quantisers,
  ``float16``/``float32`` for the float codecs); ``bytes_per_vector`` is ``code_width * itemsize``;
* ``decode(codes)`` -> float32 ``[n, output_dim]``, the codec's reconstruction;
* ``transform_queries(queries)`` -> float32 ``[n, output_dim]``: queries mapped into the space the
  decoded vectors live in (the identity except for truncation), so ``transform_queries(q) @ decode(c).T``
  approximates ``q @ x.T``;
* ``save(path)`` writes a folder (``codec.json`` with a ``format_version`` + ``.npy`` arrays, never
  pickle); ``Codec.load(path)`` reads any codec back.

Every public method validates its input and raises the classes of :mod:`embedlab.errors`;
``encode``/``decode``/``transform_queries`` before ``fit`` raise :class:`NotFittedError`.
"""

from __future__ import annotations

import inspect
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError, NotFittedError
from embedlab.files import replacing

FORMAT_VERSION = 1
_REGISTRY: dict[str, type["Codec"]] = {}


class Codec(ABC):
    """Base of every codec: input checks, the fitted-state guard and save/load.

    Subclasses set ``kind`` (the spec name), implement ``_fit``/``_encode``/``_decode``, list their
    constructor settings in ``_params`` and their learned arrays in ``_arrays``.
    """

    kind: ClassVar[str] = ""
    code_dtype: ClassVar[np.dtype] = np.dtype(np.uint8)
    _params: ClassVar[tuple[str, ...]] = ()
    _arrays: ClassVar[tuple[str, ...]] = ()
    _positional: ClassVar[tuple[str, ...]] = ()  # settings written as plain values in the spec

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    # ------------------------------------------------------------------ the contract
    def fit(self, vectors: np.ndarray) -> "Codec":
        """Learn the codec's state from float vectors ``[n, d]``; returns ``self``.

        On a bad input the codec is left exactly as it was (fitted or not).
        """
        x = self._check_vectors(vectors, "fit", dim=None)
        self._fit(x)
        self.dim_ = int(x.shape[1])
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes ``[n, code_width]`` of dtype :attr:`code_dtype` for float vectors ``[n, dim_]``."""
        self._check_fitted("encode")
        x = self._check_vectors(vectors, "encode", dim=self.dim_)
        return self._encode(x)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 ``[n, output_dim]`` reconstructions of codes ``[n, code_width]``."""
        self._check_fitted("decode")
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.code_width:
            raise InvalidInputError(
                f"{type(self).__name__}.decode: codes must have shape (n, {self.code_width}), got {codes.shape}. "
                f"Decode codes produced by this codec ({self.spec!r}, {self.bytes_per_vector} bytes per vector)."
            )
        if codes.dtype != self.code_dtype:
            raise InvalidInputError(
                f"{type(self).__name__}.decode: codes must have dtype {self.code_dtype}, got {codes.dtype}. "
                f"Decode codes produced by this codec ({self.spec!r})."
            )
        return self._decode(codes)

    def transform_queries(self, queries: np.ndarray) -> np.ndarray:
        """float32 ``[n, output_dim]``: queries in the space of :meth:`decode` (identity by default)."""
        self._check_fitted("transform_queries")
        return self._check_vectors(queries, "transform_queries", dim=self.dim_)

    def check_dim(self, dim: int, owner: str | None = None) -> int:
        """Raise :class:`InvalidInputError` if vectors of width ``dim`` cannot be coded; return the output width.

        ``fit`` runs this check; callers that know the width early (a collection at creation) run it first.
        """
        return dim

    @property
    def output_dim(self) -> int:
        """Width of :meth:`decode`'s output (``dim_`` unless the codec truncates)."""
        self._check_fitted("output_dim")
        return self.dim_

    @property
    @abstractmethod
    def code_width(self) -> int:
        """Number of code elements per vector (columns of :meth:`encode`'s output)."""

    @property
    def bytes_per_vector(self) -> int:
        """Bytes one vector's code occupies: ``code_width * code_dtype.itemsize``."""
        return int(self.code_width * self.code_dtype.itemsize)

    @property
    def spec(self) -> str:
        """The spec string that :func:`embedlab.compress.codec` parses back into this codec's settings.

        Settings without a default come first as plain values (``"pq:64,8"``); others appear as
        ``name=value`` only when they differ from their default.
        """
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        args = []
        for name in self._params:
            value = getattr(self, name)
            if defaults.get(name, inspect.Parameter.empty) is inspect.Parameter.empty or name in self._positional:
                args.append(_spec_value(value))
            elif value != defaults[name]:
                args.append(f"{name}={_spec_value(value)}")
        return self.kind + (":" + ",".join(args) if args else "")

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    def __repr__(self) -> str:
        state = f"dim_={self.dim_}" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({self.spec!r}, {state})"

    @abstractmethod
    def _fit(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _encode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, codes: np.ndarray) -> np.ndarray: ...

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted codec to the folder ``path`` (created; replaced atomically if it exists)."""
        self._check_fitted("save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.mkdir()
            self._write(tmp)
        return path

    def _write(self, folder: Path) -> None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "spec": self.spec,
            "params": {name: getattr(self, name) for name in self._params},
            "dim_": self.dim_,
            "arrays": list(self._arrays),
        }
        for name in self._arrays:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        (folder / "codec.json").write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Codec":
        """Read a codec written by :meth:`save` (any kind; ``Codec.load`` dispatches on ``codec.json``)."""
        path = Path(path)
        manifest_path = path / "codec.json"
        if not manifest_path.is_file():
            raise DataFormatError(f"Codec.load: path must be a folder written by Codec.save, got no codec.json in {path}.")
        try:
            manifest = json.loads(manifest_path.read_text())
            kind, version = manifest["kind"], manifest["format_version"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataFormatError(f"Codec.load: {manifest_path} must be a codec manifest, got unreadable JSON ({exc}).") from None
        if version != FORMAT_VERSION:
            raise DataFormatError(f"Codec.load: format_version must be {FORMAT_VERSION}, got {version!r} in {manifest_path}.")
        if kind not in _REGISTRY:
            raise DataFormatError(f"Codec.load: kind must be one of {sorted(_REGISTRY)}, got {kind!r} in {manifest_path}.")
        target = _REGISTRY[kind]
        if cls is not Codec and not issubclass(target, cls):
            raise DataFormatError(f"{cls.__name__}.load: {path} holds a {target.__name__}, not a {cls.__name__}. Use Codec.load.")
        return target._read(path, manifest)

    @classmethod
    def _read(cls, folder: Path, manifest: dict) -> "Codec":
        codec = cls(**manifest["params"])
        for name in manifest["arrays"]:
            setattr(codec, name, np.load(folder / f"{name}.npy", allow_pickle=False))
        codec._restore()
        codec.dim_ = int(manifest["dim_"])
        return codec

    def _restore(self) -> None:
        """Rebuild derived (unsaved) state after the arrays were loaded."""

    # ------------------------------------------------------------------ checks
    def _check_fitted(self, method: str) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__}.{method}: the codec must be fitted first, got an unfitted {self.spec!r}. "
                "Call fit(vectors) (or Codec.load a saved one)."
            )

    def _check_vectors(self, vectors, method: str, *, dim: int | None) -> np.ndarray:
        owner = f"{type(self).__name__}.{method}"
        try:
            x = np.asarray(vectors)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{owner}: vectors must be a float array of shape (n, d), got {type(vectors).__name__}.") from None
        if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
            want = f"(n, {dim})" if dim is not None else "(n, d)"
            raise InvalidInputError(
                f"{owner}: vectors must have shape {want}, got {x.shape}. "
                + ("Use vectors of the width the codec was fitted on." if dim is not None else "Stack the vectors into a 2-D array.")
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise InvalidInputError(f"{owner}: vectors must be floating point, got dtype {x.dtype}. Pass float32 embeddings.")
        if x.shape[0] == 0 and method == "fit":
            raise InvalidInputError(f"{owner}: vectors must hold at least one row, got {x.shape}.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InvalidInputError(f"{owner}: vectors must be finite, got NaN or inf values. Check the encoder output.")
        return x


def registered_kinds() -> list[str]:
    """Names of every codec kind a spec may use, sorted."""
    return sorted(_REGISTRY)


def codec_class(kind: str) -> type[Codec]:
    return _REGISTRY[kind]


def _spec_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
