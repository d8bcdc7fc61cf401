"""The ONNX Runtime backend: export, graph optimisation, int8 quantisation, a checked cache, and the encoder.

``Encoder.load(..., backend="onnx", precision="fp32"|"int8")`` lands here. The backbone *and* the pooling
are traced into one ONNX graph with dynamic batch and sequence axes (outputs ``sentence_embedding
[b, d]`` and ``token_embeddings [b, t, d]``, both float32), then

1. the graph is optimised: for BERT-family models ONNX Runtime's transformer fusions (one
   ``EmbedLayerNormalization``, one fused ``Attention`` per layer, ``SkipLayerNormalization``,
   ``BiasGelu``); for the others ONNX Runtime's extended graph optimisations, saved offline;
2. for ``int8``, the weights of every linear layer (attention included) are quantised to int8 per
   output channel and the activations to uint8 per tensor at run time (dynamic quantisation; Jacob et
   al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
   Inference", eq. 1-7). Keeping the outlier-sensitive layers in float32, the idea of EasyQuant (Tang
   et al. 2024, "EasyQuant: An Efficient Data-free Quantization Algorithm for LLMs", sec. 3) applied
   per layer, is available as ``quantize_int8(..., keep_ffn_down_fp32=True)`` (the feed-forward
   down-projections, fed by post-GELU activations with large outliers) but is not the default: on
   all-MiniLM-L6-v2 it lifts the mean cosine to float32 from 0.993 to 0.996 yet does not improve
   STS-B Spearman and costs about 30% of the int8 speed (``benchmarks/encode_speed.py`` measures both).

The steps are plain functions in :mod:`embedlab.models.onnx_export`. Every build is checked against
the torch model on a probe batch before it is cached: a graph that disagrees (a trace that froze a
data-dependent branch, say) is refused, never cached.

The cache lives beside the source model (``<model>/.embedlab-onnx/<key>/``) or, when that folder is
read-only, under ``$XDG_CACHE_HOME/embedlab/onnx`` (``~/.cache/embedlab/onnx``). ``<key>`` is a hash of
the model folder's content, the pooling and the precision recipe; ``manifest.json`` records the format
version, the library versions and the sha256 of ``model.onnx``. A cache whose manifest is missing, from
another format or library version, or whose file does not match its hash, is rebuilt, not trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models.encoder import Backend, Encoder, Precision, default_threads
from embedlab.models.folder import load_pretrained, resolve_max_length
from embedlab.models.onnx_export import (
    EXPORTABLE_MODEL_TYPES,
    check_build,
    export_onnx,
    import_onnxruntime,
    load_backbone,
    make_session,
    optimize_graph,
    quantize_int8,
)
from embedlab.models.pooling import Pooling

__all__ = ["OnnxEncoder", "cached_model", "load_onnx_encoder", "make_session", "quantize_int8", "source_hash"]

FORMAT_VERSION = 1
CACHE_DIR_NAME = ".embedlab-onnx"
RECIPES = {
    "fp32": "fp32-v1",
    "int8": "int8-dynamic-per-channel-v1",
}
# ---------------------------------------------------------------- cache location and keys
def source_hash(path: Path) -> str:
    """sha256 over the model folder: every file's relative path and bytes (the ONNX cache excluded)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and CACHE_DIR_NAME not in p.relative_to(path).parts)
    for f in files:
        h.update(str(f.relative_to(path)).encode())
        h.update(b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/embedlab/onnx`` (default ``~/.cache/embedlab/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embedlab" / "onnx"


def _writable_root(candidates: list[Path]) -> Path:
    for root in candidates:
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=root))
            probe.rmdir()
            return root
        except OSError:
            continue
    raise InvalidInputError(
        f"Encoder.load: cache_dir must be a writable folder, got none among {[str(c) for c in candidates]}. "
        "Pass cache_dir= pointing at a writable folder."
    )


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from embedlab import __version__

    return {"embedlab": __version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__}


def _manifest_ok(folder: Path, expected: dict) -> bool:
    """True when ``folder`` holds a model.onnx that this version built from this source, intact."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        model = folder / "model.onnx"
        return (all(manifest.get(k) == v for k, v in expected.items())
                and model.is_file() and _file_sha256(model) == manifest.get("onnx_sha256"))
    except (OSError, ValueError):
        return False


def build(source: Path, backbone_dir: Path, tokenizer, pooling: Pooling, precision: str, folder: Path,
          *, max_length: int, expected: dict) -> None:
    """Export, optimise, (quantise), check and write ``folder/model.onnx`` + ``manifest.json``."""
    backbone = load_backbone(backbone_dir)
    model_type = getattr(backbone.config, "model_type", None)
    if model_type not in EXPORTABLE_MODEL_TYPES:
        raise UnsupportedError(
            f"Encoder.load: backend='onnx' supports model types {sorted(EXPORTABLE_MODEL_TYPES)}, "
            f"got {model_type!r}. Use backend='torch' for this model."
        )
    raw, optimised, final = folder / "raw.onnx", folder / "optimised.onnx", folder / "model.onnx"
    input_names = export_onnx(backbone, tokenizer, pooling, raw, max_length=max_length)
    check_build(make_session(raw, default_threads()), backbone, tokenizer, pooling, input_names, "fp32",
                 max_length)
    optimize_graph(raw, optimised, backbone.config)
    raw.unlink()
    kept: list[str] = []
    if precision == "int8":
        kept = quantize_int8(optimised, final)
        optimised.unlink()
    else:
        optimised.rename(final)
    for extra in folder.glob("*.data"):  # external-data side files are never produced for these sizes
        extra.unlink()
    check_build(make_session(final, default_threads()), backbone, tokenizer, pooling, input_names, precision,
                 max_length)
    manifest = {**expected, "onnx_sha256": _file_sha256(final), "inputs": input_names,
                "kept_fp32": kept, "source": str(source)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def cached_model(source: Path, backbone_dir: Path, tokenizer, pooling: Pooling, precision: str, *,
                 max_length: int, cache_dir: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Return ``(model.onnx path, manifest)`` for this source, pooling and precision, building it if needed."""
    content = source_hash(source)
    key = hashlib.sha256(json.dumps([content, pooling.value, RECIPES[precision]]).encode()).hexdigest()[:16]
    expected = {"format_version": FORMAT_VERSION, "source_hash": content, "pooling": pooling.value,
                "precision": precision, "recipe": RECIPES[precision], "versions": _versions()}
    candidates = [Path(cache_dir)] if cache_dir is not None else [source / CACHE_DIR_NAME, user_cache_dir()]
    for root in candidates:  # an existing, valid build anywhere we would look is used as it is
        if _manifest_ok(root / key, expected):
            return root / key / "model.onnx", json.loads((root / key / "manifest.json").read_text())
    root = _writable_root(candidates)
    target = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
    try:
        build(source, backbone_dir, tokenizer, pooling, precision, tmp, max_length=max_length, expected=expected)
        if target.exists():  # stale, corrupt or from another version: replaced, not trusted
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "model.onnx", json.loads((target / "manifest.json").read_text())


# ---------------------------------------------------------------- the encoder
class OnnxEncoder(Encoder):
    """An :class:`Encoder` whose forward pass runs in ONNX Runtime (CPU).

    Same ``encode`` / ``encode_tokens`` outputs and options as the torch backend, except ``layers``
    (the graph holds the last layer only) and the differentiable :meth:`forward` (no gradients).
    """

    backend = Backend.ONNX

    def __init__(self, onnx_path: Path, manifest: dict, tokenizer, *, config, pooling: Pooling, max_length: int,
                 normalize_module: bool, do_lower_case: bool, source: str, threads: int | None) -> None:
        super().__init__(None, tokenizer, pooling=pooling, max_length=max_length, normalize_module=normalize_module,
                         do_lower_case=do_lower_case, source=source, threads=threads, config=config)
        self.precision = Precision(manifest["precision"])
        self.onnx_path = Path(onnx_path)
        self.manifest = manifest
        self.session = make_session(self.onnx_path, threads or default_threads())
        self._input_names = list(manifest["inputs"])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def fingerprint(self) -> str:
        """A hex digest of the source model's files, pooling, options, backend and precision recipe."""
        if self._fingerprint is None:
            payload = [self.manifest["source_hash"], self.pooling.value, self.max_length, self.do_lower_case,
                       self.backend.value, self.precision.value, self.manifest["recipe"]]
            self._fingerprint = hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
        return self._fingerprint

    def _run(self, output: str, features: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([output], {k: features[k] for k in self._input_names})[0]

    def _embed_batch(self, features: dict[str, np.ndarray], layer: int | None) -> np.ndarray:
        return self._run("sentence_embedding", features)

    def _token_batch(self, features: dict[str, np.ndarray], layer: int | None) -> np.ndarray:
        return self._run("token_embeddings", features)

    def _check_layers(self, layers: int | None, method: str) -> int | None:
        if layers is not None:
            raise UnsupportedError(
                f"Encoder.{method}: layers must be None with backend='onnx' (the exported graph holds only the "
                f"last layer), got {layers!r}. Load with backend='torch' to pool an intermediate layer."
            )
        return None

    def forward(self, features, *, layers: int | None = None):
        raise UnsupportedError(
            "Encoder.forward: backend must be 'torch' for a differentiable forward, got 'onnx'. "
            "Load with backend='torch' for training."
        )

    def save(self, path, *, overwrite: bool = False) -> Path:
        raise UnsupportedError(
            "Encoder.save: backend must be 'torch' to save a model folder, got 'onnx'. Load the source "
            f"{self.source!r} with backend='torch' and save that; the ONNX build is cached beside it."
        )


def load_onnx_encoder(path: Path, folder_config, *, pooling: Pooling, max_length: int | None, precision: str,
                      threads: int | None, cache_dir: str | os.PathLike | None) -> OnnxEncoder:
    """Build (or reuse) the ONNX export of the model folder ``path`` and wrap it in an :class:`OnnxEncoder`."""
    import_onnxruntime()
    from transformers import AutoConfig

    tokenizer, config = load_pretrained(folder_config.backbone, "config", AutoConfig)
    length = resolve_max_length(max_length, config, tokenizer, folder_config)
    onnx_path, manifest = cached_model(path, folder_config.backbone, tokenizer, pooling, precision,
                                       max_length=length, cache_dir=cache_dir)
    return OnnxEncoder(onnx_path, manifest, tokenizer, config=config, pooling=pooling,
                       max_length=length, normalize_module=folder_config.normalize,
                       do_lower_case=folder_config.do_lower_case, source=str(path), threads=threads)
