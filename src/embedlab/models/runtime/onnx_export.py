"""ONNX export, graph optimisation, dynamic int8 quantisation and build checks (used by :mod:`.onnx`).

Plain functions over files: ``export_onnx`` (torch -> ONNX; ``trace`` is its exporter call for any module),
``optimize_graph`` (fused or ORT-optimised
graph), ``quantize_int8`` (dynamic int8), ``make_session`` (a CPU session) and ``check_build`` (the
export against the torch runtime on a probe batch). The cache and the runtime live in
:mod:`embedlab.models.runtime.onnx`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from embedlab.errors import ModelNotFoundError, UnsupportedError
from embedlab.models.head import Head
from embedlab.models.pooling import Pooling, pool
from embedlab.models.runtime.torch import TorchRuntime

POOLING_MASK = "pooling_mask"  # the graph input of a model that leaves a prompt's tokens out of the pooling


# model_type values whose export is supported (encoders with absolute positions and a padding mask);
# the BERT layout also gets ONNX Runtime's fused transformer kernels.
EXPORTABLE_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert"}
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


def import_onnxruntime(owner: str = "Encoder.load"):
    try:
        import onnx  # noqa: F401  (export and quantisation need it, the session does not)
        import onnxruntime
    except ImportError as exc:
        raise UnsupportedError(
            f"{owner}: backend='onnx' needs the packages 'onnxruntime' and 'onnx', got an environment without "
            f"{exc.name!r}. Fix: pip install 'embedlab[onnx]' (onnxruntime, onnx), or use backend='torch'."
        ) from None
    return onnxruntime


# ---------------------------------------------------------------- export
class _Exportable(torch.nn.Module):
    """Backbone + pooling (+ head) as one traceable module: ``(*inputs) -> (pooled [b, dim], tokens [b, t, d])``.

    With ``"pooling_mask"`` among ``input_names`` the graph takes that mask (a prompt's tokens zeroed) for the
    pooling, and the attention mask for attention only.
    """

    def __init__(self, backbone, pooling: Pooling, input_names: list[str], head: Head | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.input_names = input_names
        self.head = head

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = dict(zip(self.input_names, inputs))
        mask = features.pop("pooling_mask", features["attention_mask"])
        hidden = self.backbone(**features).last_hidden_state
        pooled = pool(hidden, mask, self.pooling)
        return (pooled if self.head is None else self.head(pooled)), hidden


def load_backbone(backbone_dir: Path):
    from transformers import AutoModel

    try:  # eager attention: its graph is the one ONNX Runtime's attention fusion recognises
        return AutoModel.from_pretrained(str(backbone_dir), local_files_only=True, attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Encoder.load: {str(backbone_dir)!r} must hold transformers weights, got an error loading them: {exc}"
        ) from None


def _probe_features(tokenizer, input_names: list[str], max_length: int) -> dict[str, np.ndarray]:
    enc = tokenizer(_PROBE, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    features = {k: np.asarray(enc[k], dtype=np.int64) for k in input_names if k != POOLING_MASK}
    if POOLING_MASK in input_names:  # a one-token "prompt" left out, so the trace and the check use the mask
        mask = features["attention_mask"]
        features[POOLING_MASK] = mask * (np.cumsum(mask, axis=1) > 1)
    return features


def model_input_names(model, tokenizer, owner: str = "Encoder.load") -> list[str]:
    """The inputs of ``model`` that its tokenizer produces, among ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` (in that order); :class:`UnsupportedError` unless both of the first two are there."""
    accepted = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    params = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted and n in params]
    if "attention_mask" not in names or "input_ids" not in names:
        raise UnsupportedError(
            f"{owner}: backend='onnx' needs a model that takes input_ids and attention_mask, got "
            f"{getattr(model.config, 'model_type', '?')!r} taking {names}. Use backend='torch'."
        )
    return names


def trace(module: torch.nn.Module, features: dict[str, np.ndarray], input_names: list[str], path: Path, *,
          output_names: list[str], dynamic_axes: dict, model_type: str, owner: str = "Encoder.load") -> None:
    """Trace ``module(*features[input_names])`` to ``path`` (ONNX opset 17, constants folded); the tracer's own
    notes are silenced and any exporter failure becomes :class:`UnsupportedError` naming ``owner`` and the
    ``model_type``."""
    try:
        with warnings.catch_warnings():  # the tracer's own deprecation and trace notes are not the user's business
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tuple(torch.from_numpy(features[n]) for n in input_names), str(path),
                input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
                opset_version=_OPSET, do_constant_folding=True, dynamo=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise UnsupportedError(
            f"{owner}: backend='onnx' could not export the {model_type!r} model, got "
            f"{type(exc).__name__}: {str(exc)[:300]}. Use backend='torch' for this model."
        ) from None


def export_onnx(backbone, tokenizer, pooling: Pooling, path: Path, *, max_length: int, head: Head | None = None,
                pooling_mask: bool = False) -> list[str]:
    """Trace ``backbone`` + ``pooling`` (+ ``head``) to ``path`` (ONNX opset 17, dynamic batch and sequence axes).

    The trace runs on a padded probe batch, so the padding mask is a real input of the graph; with
    ``pooling_mask`` the graph also takes the pooling mask (input ``"pooling_mask"``, int64 ``[b, t]``).
    Returns the input names (those the tokenizer produces and the model accepts, then ``"pooling_mask"``).
    Raises :class:`UnsupportedError` when the exporter fails.
    """
    input_names = model_input_names(backbone, tokenizer)
    if pooling_mask:
        input_names.append(POOLING_MASK)
    features = _probe_features(tokenizer, input_names, max_length)
    module = _Exportable(backbone, pooling, input_names, head).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes.update({"sentence_embedding": {0: "batch"}, "token_embeddings": {0: "batch", 1: "sequence"}})
    trace(module, features, input_names, path, output_names=["sentence_embedding", "token_embeddings"],
          dynamic_axes=axes, model_type=getattr(backbone.config, "model_type", "?"))
    return input_names


def optimize_graph(src: Path, dst: Path, config) -> None:
    """Write the optimised graph of ``src`` to ``dst`` (transformer fusions for BERT, else ORT's own)."""
    ort = import_onnxruntime()
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
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_build(session, backbone, tokenizer, pooling: Pooling, input_names: list[str], precision: str,
                max_length: int, head: Head | None = None) -> None:
    """Refuse a build whose pooled output on the probe batch strays from the torch runtime's (UnsupportedError)."""
    features = _probe_features(tokenizer, input_names, max_length)
    expected = TorchRuntime(backbone, pooling=pooling, head=head).embed(features)
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
