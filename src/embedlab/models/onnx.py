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

Every build is checked against the torch model on a probe batch before it is cached: a graph that
disagrees (a trace that froze a data-dependent branch, say) is refused, never cached.

The cache lives beside the source model (``<model>/.embedlab-onnx/<key>/``) or, when that folder is
read-only, under ``$XDG_CACHE_HOME/embedlab/onnx`` (``~/.cache/embedlab/onnx``). ``<key>`` is a hash of
the model folder's content, the pooling and the precision recipe; ``manifest.json`` records the format
version, the library versions and the sha256 of ``model.onnx``. A cache whose manifest is missing, from
another format or library version, or whose file does not match its hash, is rebuilt, not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator
import numpy as np
import torch

from embedlab.errors import InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models.encoder import Backend, Encoder, Precision, _resolve_max_length, default_threads
from embedlab.models.pooling import Pooling, pool

FORMAT_VERSION = 1
CACHE_DIR_NAME = ".embedlab-onnx"
RECIPES = {
    "fp32": "fp32-v1",
    "int8": "int8-dynamic-per-channel-v1",
}
# model_type values whose export is supported (encoders with absolute positions and a padding mask);
# the BERT layout also gets ONNX Runtime's fused transformer kernels.
_EXPORTABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert"}
_FUSED = {"bert"}
_OPSET = 17
_PARITY_ATOL = 1e-3  # float32 export vs torch on the probe batch (max abs difference of pooled outputs)
_INT8_MIN_COSINE = 0.95  # int8 build vs torch on the probe batch; below this the build is refused
_PROBE = [
    "embedlab checks every ONNX export against the torch model before caching it.",
    "short text",
    "A third sentence, of middling length, with punctuation: commas, colons; and digits 1234.",
    "",
]


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    """Raise the given loggers to ERROR for the block (ONNX Runtime's tools log hints as warnings)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _import_onnxruntime(owner: str = "Encoder.load"):
    try:
        import onnx  # noqa: F401  (export and quantisation need it, the session does not)
        import onnxruntime
    except ImportError as exc:
        raise UnsupportedError(
            f"{owner}: backend='onnx' needs the packages 'onnxruntime' and 'onnx', got an environment without "
            f"{exc.name!r}. Fix: pip install 'embedlab[onnx]' (onnxruntime, onnx), or use backend='torch'."
        ) from None
    return onnxruntime


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


# ---------------------------------------------------------------- export
class _Exportable(torch.nn.Module):
    """Backbone + pooling as one traceable module: ``(*inputs) -> (pooled [b, d], tokens [b, t, d])``."""

    def __init__(self, backbone, pooling: Pooling, input_names: list[str], left_padding: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.input_names = input_names
        self.left_padding = left_padding

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = dict(zip(self.input_names, inputs))
        hidden = self.backbone(**features).last_hidden_state
        mask = features["attention_mask"]
        if self.pooling is not Pooling.LAST_TOKEN:
            return pool(hidden, mask, self.pooling), hidden
        if self.left_padding:  # trace-safe last-token pooling: no data-dependent branch
            return hidden[:, -1], hidden
        last = (mask.sum(dim=1) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        return torch.gather(hidden, 1, last).squeeze(1), hidden


def _load_backbone(backbone_dir: Path):
    from transformers import AutoModel

    try:  # eager attention: its graph is the one ONNX Runtime's attention fusion recognises
        return AutoModel.from_pretrained(str(backbone_dir), local_files_only=True, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Encoder.load: {str(backbone_dir)!r} must hold transformers weights, got an error loading them: {exc}"
        ) from None


def _probe_features(tokenizer, input_names: list[str], max_length: int) -> dict[str, np.ndarray]:
    enc = tokenizer(_PROBE, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(enc[k], dtype=np.int64) for k in input_names}


def export_onnx(backbone, tokenizer, pooling: Pooling, path: Path, *, max_length: int) -> list[str]:
    """Trace ``backbone`` + ``pooling`` to ``path`` (ONNX opset 17, dynamic batch and sequence axes).

    The trace runs on a padded probe batch, so the padding mask is a real input of the graph. Returns
    the input names (those the tokenizer produces and the model accepts). Raises
    :class:`UnsupportedError` when the exporter fails.
    """
    model_type = getattr(backbone.config, "model_type", "?")
    accepted = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    params = inspect.signature(backbone.forward).parameters
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted and n in params]
    if "attention_mask" not in input_names or "input_ids" not in input_names:
        raise UnsupportedError(
            f"Encoder.load: backend='onnx' needs a model that takes input_ids and attention_mask, got "
            f"{model_type!r} taking {input_names}. Use backend='torch'."
        )
    features = _probe_features(tokenizer, input_names, max_length)
    module = _Exportable(backbone, pooling, input_names, getattr(tokenizer, "padding_side", "right") == "left").eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes.update({"sentence_embedding": {0: "batch"}, "token_embeddings": {0: "batch", 1: "sequence"}})
    try:
        with warnings.catch_warnings():  # the tracer's own deprecation and trace notes are not the user's business
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tuple(torch.from_numpy(features[n]) for n in input_names), str(path),
                input_names=input_names, output_names=["sentence_embedding", "token_embeddings"],
                dynamic_axes=axes, opset_version=_OPSET, do_constant_folding=True, dynamo=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise UnsupportedError(
            f"Encoder.load: backend='onnx' could not export the {model_type!r} model, got "
            f"{type(exc).__name__}: {str(exc)[:300]}. Use backend='torch' for this model."
        ) from None
    return input_names


def optimize_graph(src: Path, dst: Path, config) -> None:
    """Write the optimised graph of ``src`` to ``dst`` (transformer fusions for BERT, else ORT's own)."""
    ort = _import_onnxruntime()
    if config.model_type in _FUSED:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings(), _quiet_logs("onnxruntime"):
            warnings.simplefilter("ignore")
            fused = optimizer.optimize_model(str(src), model_type="bert", num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size, opt_level=0)
        fused.save_model_to_file(str(dst))
        return
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def quantize_int8(src: Path, dst: Path, *, keep_ffn_down_fp32: bool = False, per_channel: bool = True) -> list[str]:
    """Dynamic int8 quantisation of ``src`` into ``dst``; returns the names of the nodes kept in float32.

    Weights: int8, symmetric, per output channel (``per_channel``). Activations: uint8, per tensor,
    scale and zero point computed per batch at run time. With ``keep_ffn_down_fp32`` the MatMuls fed
    by a GELU (the feed-forward down-projections, whose inputs carry the outliers) stay float32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src)).graph
    gelu_outputs = {o for n in graph.node if "Gelu" in n.op_type for o in n.output}
    keep = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0] in gelu_outputs] \
        if keep_ffn_down_fp32 else []
    with _quiet_logs("", "onnxruntime"):  # the quantiser logs a pre-processing hint on the root logger
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=keep, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return keep


def make_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and all graph optimisations.

    Idle worker threads sleep instead of spinning: on a shared machine spinning burns the cores the
    other threads need (measured here: 25-40% more texts/s with two busy cores and no spinning).
    """
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_build(session, backbone, tokenizer, pooling: Pooling, input_names: list[str], precision: str,
                 max_length: int) -> None:
    features = _probe_features(tokenizer, input_names, max_length)
    with torch.inference_mode():
        hidden = backbone(**{k: torch.from_numpy(v) for k, v in features.items()}).last_hidden_state
        expected = pool(hidden, torch.from_numpy(features["attention_mask"]), pooling).numpy()
    got = session.run(["sentence_embedding"], features)[0]
    model_type = getattr(backbone.config, "model_type", "?")
    if precision == "fp32":
        err = float(np.abs(got - expected).max())
        if not err <= _PARITY_ATOL:
            raise UnsupportedError(
                f"Encoder.load: backend='onnx' export of the {model_type!r} model must match torch within "
                f"{_PARITY_ATOL}, got a max difference of {err:.3g}. Use backend='torch' for this model."
            )
        return
    cos = (got * expected).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1), 1e-12)
    if not cos.min() >= _INT8_MIN_COSINE:
        raise UnsupportedError(
            f"Encoder.load: precision='int8' for the {model_type!r} model must keep cosine >= {_INT8_MIN_COSINE} "
            f"to float32, got {cos.min():.3f}. Use precision='fp32'."
        )


def build(source: Path, backbone_dir: Path, tokenizer, pooling: Pooling, precision: str, folder: Path,
          *, max_length: int, expected: dict) -> None:
    """Export, optimise, (quantise), check and write ``folder/model.onnx`` + ``manifest.json``."""
    backbone = _load_backbone(backbone_dir)
    model_type = getattr(backbone.config, "model_type", None)
    if model_type not in _EXPORTABLE:
        raise UnsupportedError(
            f"Encoder.load: backend='onnx' supports model types {sorted(_EXPORTABLE)}, got {model_type!r}. "
            "Use backend='torch' for this model."
        )
    raw, optimised, final = folder / "raw.onnx", folder / "optimised.onnx", folder / "model.onnx"
    input_names = export_onnx(backbone, tokenizer, pooling, raw, max_length=max_length)
    _check_build(make_session(raw, default_threads()), backbone, tokenizer, pooling, input_names, "fp32",
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
    _check_build(make_session(final, default_threads()), backbone, tokenizer, pooling, input_names, precision,
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
    _import_onnxruntime()
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder_config.backbone), local_files_only=True)
        config = AutoConfig.from_pretrained(str(folder_config.backbone), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Encoder.load: {str(folder_config.backbone)!r} must hold a transformers config and a tokenizer, "
            f"got an error loading them: {exc}"
        ) from None
    length = _resolve_max_length(max_length, config, tokenizer, folder_config)
    onnx_path, manifest = cached_model(path, folder_config.backbone, tokenizer, pooling, precision,
                                       max_length=length, cache_dir=cache_dir)
    return OnnxEncoder(onnx_path, manifest, tokenizer, config=config, pooling=pooling,
                       max_length=length, normalize_module=folder_config.normalize,
                       do_lower_case=folder_config.do_lower_case, source=str(path), threads=threads)
