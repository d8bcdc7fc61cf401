"""Compressed collections: codes in RAM, rescoring with the float vectors memory-mapped from disk.

``Collection.create(path, dim=384, index="flat", codec="binary", rescore="float32", oversample=4)``
keeps only the codec's codes in memory (48 bytes per 384-d vector for ``binary``), scans them for the best
``k * oversample`` rows (Hamming, PQ look-up tables or decode-and-multiply, see
:mod:`embedlab.compress.search`), then re-ranks those rows by the exact inner product with the stored
float32 rows, read on demand from the collection's memory-mapped vectors file (the OS page cache holds
what is hot; the process does not). ``rescore="int8"`` re-ranks with int8 reconstructions of those rows
instead (an int8 codec calibrated on the same training rows); ``rescore=None`` returns the code scores.

The codec is trained once ``codec_train_size`` rows exist, on exactly rows ``0 .. codec_train_size - 1``;
until then the index is an exact scan of the float rows. The fitted codec and the codes are written into the collection's index checkpoint (an ``.npz`` inside ``index-<gen>-<rows>.faiss``, no
pickle); rows past the checkpoint are re-encoded on open.

Only ``index="flat"`` (an exhaustive scan over codes) and the inner-product metrics (``cosine``, ``ip``) are
supported with a codec; other combinations raise :class:`UnsupportedError` instead of being ignored.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from embedlab.compress import Codec, CodeSearcher, codec as parse_codec, rescore as rescore_rows
from embedlab.compress.chain import ChainCodec
from embedlab.compress.pq import PQCodec
from embedlab.compress.scalar import Int8Codec, ScalarQuantizer
from embedlab.errors import DataFormatError, InvalidInputError, UnsupportedError
from embedlab.index.search.exact import exact_search
from embedlab.index.search.faiss_backends import VectorSource
from embedlab.params import check_choice, check_int
from embedlab.selector import BitmapSelector

RESCORE = ("float32", "int8", None)
CODEC_PARAMS = ("codec", "rescore", "oversample", "codec_train_size")  # index parameters that choose this index
CHECKPOINT_VERSION = 1


def default_train_size(codec: Codec) -> int:
    """Rows needed before the codec is trained: 1 for codecs that learn nothing, 1,000 for scalar ranges,
    ``39 * 2**nbits`` for product quantisation (faiss's advice: 39 training points per centroid).
    ``rescore="int8"`` raises the default to at least 1,000 (its int8 ranges are fitted on the same rows)."""
    last = codec.last if isinstance(codec, ChainCodec) else codec
    if isinstance(last, PQCodec):
        return 39 * 2**last.nbits
    if isinstance(last, ScalarQuantizer):
        return 1000
    return 1


def _check_metric(metric: str, owner: str) -> None:
    if metric not in ("cosine", "ip"):
        raise UnsupportedError(
            f"{owner}: metric must be 'cosine' or 'ip' with codec=, got {metric!r}. Codes are searched by inner "
            "product; use metric='cosine' (or drop codec=).")


class CompressedIndex:
    """A :class:`~embedlab.index.search.faiss_backends.VectorIndex` over codec codes with optional rescoring (module docstring)."""

    kind = "flat"
    default_ef = 0

    def __init__(self, dim: int, metric: str, params: dict, source: VectorSource) -> None:
        _check_metric(metric, "Collection.open")
        self.dim, self.metric, self.params, self.source = dim, metric, params, source
        self.codec: Codec = parse_codec(params["codec"])
        self.rescore_codec: Codec | None = None
        self.searcher: CodeSearcher | None = None
        self._n = 0

    @staticmethod
    def check_params(own: dict, kind: str, owner: str, metric: str | None = None, dim: int | None = None) -> dict:
        """The :data:`CODEC_PARAMS` validated with defaults filled; ``metric`` and ``dim`` (when given) must suit
        the codec (inner-product metrics, a width the codec can code)."""
        spec = own.get("codec")
        if not isinstance(spec, str):
            raise InvalidInputError(f"{owner}: codec must be a codec spec string such as 'binary', 'int8' or 'pq:48', got {spec!r}.")
        c = parse_codec(spec)  # raises with the list of known codecs
        if kind != "flat":
            raise UnsupportedError(
                f"{owner}: codec= needs index='flat' (an exhaustive scan over the in-RAM codes, then rescoring), got "
                f"index={kind!r}. Pass index='flat', or drop codec= to use a graph over float vectors.")
        rescore = own.get("rescore", "float32")
        rescore = {True: "float32", False: None}.get(rescore, rescore) if isinstance(rescore, bool) else rescore
        check_choice(rescore, RESCORE, owner, "rescore", hint="(True and False mean 'float32' and None.)")
        oversample = check_int(own.get("oversample", 4), owner, "oversample", hint="Candidates are k * oversample.")
        if rescore is None and "oversample" in own and oversample != 1:
            raise InvalidInputError(f"{owner}: oversample must be 1 without rescoring, got {oversample}. Set rescore='float32' or drop oversample.")
        train = check_int(own.get("codec_train_size", max(default_train_size(c), 1000 if rescore == "int8" else 1)),
                          owner, "codec_train_size")
        last = c.last if isinstance(c, ChainCodec) else c
        minimum = 2**last.nbits if isinstance(last, PQCodec) else 1
        if train < minimum:
            raise InvalidInputError(f"{owner}: codec_train_size must be >= {minimum} for {spec!r} (one row per centroid), got {train}.")
        if metric is not None and dim is not None:
            _check_metric(metric, owner)
            c.check_dim(dim, f"{owner}: codec {c.spec!r}")
        return {"codec": c.spec, "rescore": rescore, "oversample": oversample if rescore else 1,
                "codec_train_size": train}

    @classmethod
    def create(cls, dim: int, metric: str, params: dict, source: VectorSource) -> "CompressedIndex":
        return cls(dim, metric, params, source)

    # ------------------------------------------------------------------ VectorIndex
    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def trained(self) -> bool:
        return self.searcher is not None

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.trained:
            self.searcher.add(self.codec.encode(vectors))
            self._n += len(vectors)
            return
        self._n += len(vectors)
        if self._n >= self.params["codec_train_size"]:
            self._train()

    def _train(self) -> None:
        stored = self.source()
        sample = np.asarray(stored[: self.params["codec_train_size"]], dtype=np.float32)
        codec = parse_codec(self.params["codec"]).fit(sample)
        rescore_codec = Int8Codec().fit(sample) if self.params["rescore"] == "int8" else None
        searcher = CodeSearcher(codec)
        for start in range(0, self._n, 65536):
            searcher.add(codec.encode(np.asarray(stored[start : min(self._n, start + 65536)])))
        self.codec, self.rescore_codec, self.searcher = codec, rescore_codec, searcher

    def search(self, queries: np.ndarray, k: int, *, allowed: BitmapSelector | None = None, ef: int | None = None,
               oversample: int | None = None):
        q = np.ascontiguousarray(queries, dtype=np.float32)
        stored = self.source()
        if not self.trained:  # before training: an exact scan of the float rows
            rows = allowed.rows if allowed is not None else np.arange(self._n)
            scores, pos = exact_search(q, np.asarray(stored[rows]), k) if len(rows) else (
                np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
            return scores, np.where(pos >= 0, rows[np.maximum(pos, 0)], -1)
        subset = allowed.mask[: self._n] if allowed is not None else None
        rescore = self.params["rescore"]
        candidates = k * int(oversample or self.params["oversample"]) if rescore else k
        scores, rows = self.searcher.search(q, candidates, subset=subset)
        if rescore == "float32":
            return rescore_rows(q, rows, stored, k)
        if rescore == "int8":
            return rescore_rows(q, rows, _Reencoded(stored, self.rescore_codec), k, codec=self.rescore_codec)
        return scores, rows

    # ------------------------------------------------------------------ sizes
    def ram_bytes_per_vector(self) -> float:
        """Bytes per row this index keeps in RAM (the codes; float rows until the codec is trained)."""
        return float(self.codec.bytes_per_vector if self.trained else 4 * self.dim)

    keeps_rows = False  # the codes are not the stored rows: exact scoring gathers them from the vectors file

    # ------------------------------------------------------------------ persistence
    @property
    def worth_writing(self) -> bool:
        return self.trained  # before training the index is an exact scan of the stored rows

    def write(self, path: Path) -> None:
        arrays = {"codes": np.ascontiguousarray(self.searcher.codes)}
        meta = {"version": CHECKPOINT_VERSION, "spec": self.codec.spec, "rows": self._n}
        arrays.update(_pack(self.codec, "codec/"))
        if self.rescore_codec is not None:
            arrays.update(_pack(self.rescore_codec, "rescore_codec/"))
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def read(cls, dim: int, metric: str, params: dict, path: Path, source: VectorSource) -> "CompressedIndex":
        index = cls(dim, metric, params, source)
        try:
            with np.load(path, allow_pickle=False) as npz:
                files = {name: npz[name] for name in npz.files}
            meta = json.loads(files["meta"].tobytes())
            codec = _unpack(files, "codec/")
            rescore_codec = _unpack(files, "rescore_codec/") if params["rescore"] == "int8" else None
            codes = files["codes"]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"Collection.open: {path.name} must be a compressed-index checkpoint, got: {exc}") from None
        if meta.get("version") != CHECKPOINT_VERSION or codec.spec != parse_codec(params["codec"]).spec:
            raise DataFormatError(f"Collection.open: {path.name} holds codec {codec.spec!r} (version {meta.get('version')}), "
                                  f"but the manifest names {params['codec']!r}.")
        index.codec, index.rescore_codec = codec, rescore_codec
        index.searcher = CodeSearcher(codec, codes)
        index._n = len(codes)
        return index


class _Reencoded:
    """Rows of a float matrix seen as int8 codes (encoded on read): what an int8 rescoring tier stores."""

    def __init__(self, vectors, codec: Codec) -> None:
        self.vectors, self.codec = vectors, codec
        self.shape = (len(vectors), codec.code_width)
        self.ndim = 2

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, rows):
        return self.codec.encode(np.asarray(self.vectors[rows], dtype=np.float32))


def _pack(codec: Codec, prefix: str) -> dict[str, np.ndarray]:
    """A saved codec folder as ``{prefix + relative path: bytes as uint8}`` entries of an ``.npz``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = codec.save(Path(tmp) / "codec")
        return {prefix + str(p.relative_to(folder)): np.frombuffer(p.read_bytes(), np.uint8)
                for p in sorted(folder.rglob("*")) if p.is_file()}


def _unpack(files: dict[str, np.ndarray], prefix: str) -> Codec:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "codec"
        for name, data in files.items():
            if name.startswith(prefix):
                target = folder / name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.tobytes())
        return Codec.load(folder)
