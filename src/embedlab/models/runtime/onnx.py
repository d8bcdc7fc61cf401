"""The ONNX Runtime runtime: export, graph optimisation, int8 quantisation, a checked cache, one batch at a time.

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

The steps are plain functions in :mod:`embedlab.models.runtime.onnx_export`. Every build is checked against
the torch runtime on a probe batch before it is cached: a graph that disagrees (a trace that froze a
data-dependent branch, say) is refused, never cached.

The cache lives beside the source model (``<model>/.embedlab-onnx/<key>/``) or, when that folder is
read-only, under ``$XDG_CACHE_HOME/embedlab/onnx`` (``~/.cache/embedlab/onnx``). ``<key>`` is a hash of
the model folder's content, the pooling and the precision recipe; ``manifest.json`` records
:data:`FORMAT_VERSION` (the version of this module's export and manifest), the library versions and the
sha256 of ``model.onnx``. A cache whose manifest is missing, from another format or library version, or
whose file does not match its hash, is rebuilt, not trusted. A build is written aside and renamed into
place (:func:`embedlab.files.replacing`), so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.files import hash_file, replacing
from embedlab.models.head import Head
from embedlab.models.pooling import Pooling
from embedlab.models.runtime import Backend, Precision
from embedlab.models.runtime.onnx_export import (
    EXPORTABLE_MODEL_TYPES,
    POOLING_MASK,
    check_build,
    export_onnx,
    load_backbone,
    make_session,
    optimize_graph,
    quantize_int8,
)
from embedlab.models.runtime.threads import default_threads

FORMAT_VERSION = 2  # 2: the export is named by this version and the recipe, no longer by the embedlab version
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
        hash_file(h, f)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    hash_file(h, path)
    return h.hexdigest()


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/embedlab/onnx`` (default ``~/.cache/embedlab/onnx``), read when called."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embedlab" / "onnx"


def _writable_root(candidates: list[Path], owner: str) -> Path:
    for root in candidates:
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=root))
            probe.rmdir()
            return root
        except OSError:
            continue
    raise InvalidInputError(
        f"{owner}: cache_dir must be a writable folder, got none among {[str(c) for c in candidates]}. "
        "Pass cache_dir= pointing at a writable folder."
    )


def cache_roots(source: Path | None, cache_dir: str | os.PathLike | None) -> list[Path]:
    """Where builds are looked for and written, in order: ``cache_dir`` alone when given, else beside the source
    model (``<source>/.embedlab-onnx``, when there is a source folder) then :func:`user_cache_dir`."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    return ([source / CACHE_DIR_NAME] if source is not None else []) + [user_cache_dir()]


def cached_build(key: str, expected: dict, roots: list[Path], build_into: Callable[[Path], None], *,
                 owner: str = "Encoder.load") -> tuple[Path, dict]:
    """``(model.onnx path, manifest)`` of the build ``<root>/<key>`` whose manifest holds ``expected`` (and whose
    file matches its hash) under any of ``roots``; else ``build_into(folder)`` writes ``model.onnx`` and
    ``manifest.json`` (with ``expected`` and ``onnx_sha256``) into a fresh folder, renamed into place under the
    first writable root."""
    for root in roots:  # an existing, valid build anywhere we would look is used as it is
        if _manifest_ok(root / key, expected):
            return root / key / "model.onnx", json.loads((root / key / "manifest.json").read_text())
    target = _writable_root(roots, owner) / key
    with replacing(target) as tmp:  # a stale, corrupt or other-version build is replaced, not trusted
        tmp.mkdir()
        build_into(tmp)
    return target / "model.onnx", json.loads((target / "manifest.json").read_text())


def library_versions() -> dict:
    """The versions of the libraries a build depends on; a cache built under others is rebuilt."""
    import onnx
    import onnxruntime
    import transformers

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__}


def _manifest_ok(folder: Path, expected: dict) -> bool:
    """True when ``folder`` holds a model.onnx that this version built from this source, intact."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        model = folder / "model.onnx"
        return (all(manifest.get(k) == v for k, v in expected.items())
                and model.is_file() and file_sha256(model) == manifest.get("onnx_sha256"))
    except (OSError, ValueError):
        return False


def build(source: Path, backbone_dir: Path, tokenizer, pooling: Pooling, precision: str, folder: Path,
          *, max_length: int, expected: dict, head: Head | None = None, pooling_mask: bool = False) -> None:
    """Export, optimise, (quantise), check and write ``folder/model.onnx`` + ``manifest.json``.

    ``folder`` is private to this build (the caller renames it into place), so its files are written directly.
    """
    backbone = load_backbone(backbone_dir)
    model_type = getattr(backbone.config, "model_type", None)
    if model_type not in EXPORTABLE_MODEL_TYPES:
        raise UnsupportedError(
            f"Encoder.load: backend='onnx' supports model types {sorted(EXPORTABLE_MODEL_TYPES)}, "
            f"got {model_type!r}. Use backend='torch' for this model."
        )
    raw, optimised, final = folder / "raw.onnx", folder / "optimised.onnx", folder / "model.onnx"
    input_names = export_onnx(backbone, tokenizer, pooling, raw, max_length=max_length, head=head,
                              pooling_mask=pooling_mask)
    check_build(make_session(raw, default_threads()), backbone, tokenizer, pooling, input_names, "fp32",
                max_length, head)
    kept: list[str] = []
    if precision == "int8":
        optimize_graph(raw, optimised, backbone.config)
        kept = quantize_int8(optimised, final)
        optimised.unlink()
    else:
        optimize_graph(raw, final, backbone.config)
    raw.unlink()
    for extra in folder.glob("*.data"):  # external-data side files are never produced for these sizes
        extra.unlink()
    check_build(make_session(final, default_threads()), backbone, tokenizer, pooling, input_names, precision,
                max_length, head)
    manifest = {**expected, "onnx_sha256": file_sha256(final), "inputs": input_names,
                "kept_fp32": kept, "source": str(source)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def cached_model(source: Path, backbone_dir: Path, tokenizer, pooling: Pooling, precision: str, *,
                 max_length: int, cache_dir: str | os.PathLike | None = None, head: Head | None = None,
                 pooling_mask: bool = False) -> tuple[Path, dict]:
    """Return ``(model.onnx path, manifest)`` for this source, pooling (and ``head``, and whether the graph takes
    a ``pooling_mask``) and precision, building it if needed."""
    content = source_hash(source)
    key = hashlib.sha256(json.dumps([content, pooling.value, RECIPES[precision]]).encode()).hexdigest()[:16]
    expected = {"format_version": FORMAT_VERSION, "source_hash": content, "pooling": pooling.value,
                "precision": precision, "recipe": RECIPES[precision], "versions": library_versions()}
    if head is not None or pooling_mask:  # only then, so the builds of plain models stay valid
        expected["head"] = {"modules": [] if head is None else head.describe(), "pooling_mask": pooling_mask,
                            "dim": None if head is None else head.dim}
    return cached_build(key, expected, cache_roots(source, cache_dir),
                        lambda folder: build(source, backbone_dir, tokenizer, pooling, precision, folder,
                                             max_length=max_length, expected=expected, head=head,
                                             pooling_mask=pooling_mask))


# ---------------------------------------------------------------- the runtime
class OnnxRuntime:
    """One padded batch through an ONNX Runtime CPU session of a cached build (:func:`cached_model`).

    Its pooling, head (output width :attr:`dim`) and precision are the build's (``manifest``); the graph holds
    the last layer only, so ``layer`` must be None, and there are no gradients. A graph that takes a
    ``pooling_mask`` is fed the batch's, or its attention mask when the batch has none. ``threads``:
    intra-op threads (None: every core this process may use).
    """

    backend = Backend.ONNX
    per_layer = False

    def __init__(self, onnx_path: str | os.PathLike, manifest: dict, *, config, threads: int | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.manifest = manifest
        self.config = config
        self.threads = threads
        self.pooling = Pooling(manifest["pooling"])
        self.precision = Precision(manifest["precision"])
        self.session = make_session(self.onnx_path, threads or default_threads())
        self._input_names = list(manifest["inputs"])
        self._pooling_mask = POOLING_MASK in self._input_names
        self.dim = int((manifest.get("head") or {}).get("dim") or config.hidden_size)

    @classmethod
    def load(cls, source: Path, backbone_dir: Path, tokenizer, *, config, pooling: Pooling, precision: Precision,
             max_length: int, threads: int | None = None, cache_dir: str | os.PathLike | None = None,
             head: Head | None = None, pooling_mask: bool = False) -> "OnnxRuntime":
        """The runtime over the cached build of the model folder ``source`` (built first when missing or stale)."""
        onnx_path, manifest = cached_model(source, backbone_dir, tokenizer, pooling, precision.value,
                                           max_length=max_length, cache_dir=cache_dir, head=head,
                                           pooling_mask=pooling_mask)
        return cls(onnx_path, manifest, config=config, threads=threads)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def running(self) -> ContextManager[None]:
        return contextlib.nullcontext()  # the session holds its thread count

    def _run(self, method: str, output: str, features: dict[str, np.ndarray], layer: int | None) -> np.ndarray:
        if layer is not None:
            raise UnsupportedError(f"OnnxRuntime.{method}: layer must be None (the graph holds the last layer "
                                   f"only), got {layer!r}. Use the torch runtime for an intermediate layer.")
        if self._pooling_mask and POOLING_MASK not in features:
            features = {**features, POOLING_MASK: features["attention_mask"]}
        return self.session.run([output], {k: features[k] for k in self._input_names})[0]

    def embed(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Pooled, unnormalised float32 ``[b, d]`` for one padded batch (int64 arrays ``[b, t]``)."""
        return self._run("embed", "sentence_embedding", features, layer)

    def token_states(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Token states, float32 ``[b, t, d]``, for one padded batch."""
        return self._run("token_states", "token_embeddings", features, layer)

    def fingerprint(self, *, max_length: int, do_lower_case: bool, vocab_size: int,
                    include_prompt: bool = True) -> str:
        """sha256 of the source model's files, pooling, text settings, backend and precision recipe, 16 hex.

        ``vocab_size`` is covered by the source hash (the tokenizer files). Embedding caches on disk are
        keyed by it: changing what goes in re-encodes every cached corpus.
        """
        payload = [self.manifest["source_hash"], self.pooling.value, max_length, do_lower_case,
                   self.backend.value, self.precision.value, self.manifest["recipe"]]
        if not include_prompt:
            payload.append("exclude-prompt")
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- a prebuilt ONNX file
class PrebuiltOnnxRuntime:
    """One padded batch through an ONNX file built elsewhere (e.g. a model shipped as ``model.onnx`` in a package).

    The graph must take ``input_ids`` and ``attention_mask`` (and optionally ``token_type_ids``), int64 ``[b, t]``,
    and have exactly one float output of rank 3, the token states ``[b, t, d]``; embedlab pools them itself with
    ``pooling`` (any pooled output of the graph is not used, so the pooling is always the one asked for). No
    graph changes, no quantisation (``precision`` is fp32) and no intermediate layers. ``config`` holds
    ``hidden_size`` (read from the output) and ``num_hidden_layers`` (counted from the graph's layer norms:
    two per BERT block plus the embeddings', 0 when the graph has another shape).
    """

    backend = Backend.ONNX
    precision = Precision.FP32
    per_layer = False

    def __init__(self, onnx_path: str | os.PathLike, *, pooling: Pooling, threads: int | None = None) -> None:
        import onnx

        self.onnx_path = Path(onnx_path)
        self.pooling = pooling
        self.threads = threads
        self.session = make_session(self.onnx_path, threads or default_threads())
        names = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(names) - {"input_ids", "attention_mask", "token_type_ids"})
        if unknown or not {"input_ids", "attention_mask"} <= set(names):
            raise UnsupportedError(
                f"Encoder.load: a prebuilt ONNX model must take input_ids and attention_mask (and optionally "
                f"token_type_ids), got inputs {names} in {self.onnx_path}. Export the model with those inputs.")
        self._input_names = names
        tokens = [o for o in self.session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 3]
        if len(tokens) != 1:
            raise UnsupportedError(
                f"Encoder.load: a prebuilt ONNX model must have exactly one float output of rank 3 (the token states "
                f"[b, t, d]), got {[(o.name, o.type, o.shape) for o in self.session.get_outputs()]} in "
                f"{self.onnx_path}. Export the model's last hidden state as an output.")
        self._output = tokens[0].name
        width = tokens[0].shape[-1]
        if not isinstance(width, int):
            probe = {"input_ids": np.array([[101, 102]], np.int64), "attention_mask": np.ones((1, 2), np.int64),
                     "token_type_ids": np.zeros((1, 2), np.int64)}
            width = int(self._session_run(probe).shape[-1])
        graph = onnx.load(str(self.onnx_path), load_external_data=False).graph
        norms = sum(node.op_type in ("LayerNormalization", "SkipLayerNormalization") for node in graph.node)
        layers = (norms - 1) // 2 if norms % 2 == 1 else 0
        from types import SimpleNamespace

        self.config = SimpleNamespace(hidden_size=int(width), num_hidden_layers=int(layers), model_type="onnx")
        self.dim = int(width)
        self._sha256 = file_sha256(self.onnx_path)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def running(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def _session_run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self._output], {k: features[k] for k in self._input_names})[0]

    def token_states(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Token states, float32 ``[b, t, d]``, for one padded batch."""
        if layer is not None:
            raise UnsupportedError(f"PrebuiltOnnxRuntime.token_states: layer must be None (a prebuilt graph gives "
                                   f"its last layer only), got {layer!r}.")
        return self._session_run(features)

    def embed(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Pooled, unnormalised float32 ``[b, d]`` for one padded batch (int64 arrays ``[b, t]``)."""
        from embedlab.models.pooling import pool

        hidden = torch.from_numpy(self.token_states(features, layer))
        mask = torch.from_numpy(np.asarray(features.get(POOLING_MASK, features["attention_mask"])))
        return pool(hidden, mask, self.pooling).numpy()

    def fingerprint(self, *, max_length: int, do_lower_case: bool, vocab_size: int,
                    include_prompt: bool = True) -> str:
        """sha256 of the ONNX file, the pooling and the text settings, 16 hex."""
        payload = [self._sha256, "prebuilt", self.pooling.value, max_length, do_lower_case, vocab_size,
                   include_prompt]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
