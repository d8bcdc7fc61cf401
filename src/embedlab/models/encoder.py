"""The :class:`Encoder`: a transformers backbone with our own pooling, batching and truncation.

Loads sentence-transformers folders (``modules.json`` + pooling config) and plain transformers
folders (read by :mod:`embedlab.models.folder`, which also resolves the bundled default model without any
network), and saves folders that both embedlab and sentence-transformers load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from enum import Enum
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from embedlab.errors import ConflictError, InvalidInputError, UnsupportedError
from embedlab.models.folder import ST_POOLING_KEYS, load_pretrained, read_folder, resolve_max_length, resolve_model_path
from embedlab.models.pooling import Pooling, pool
from embedlab.types import Embeddings, MultiVectors, ProgressCallback, report_progress

_CHUNK_BATCHES = 16  # texts are tokenised this many batches at a time: bounded memory, one tokenizer pass
_CHUNK_TEXTS = 4096  # ... and at least this many texts, so token-budget batches can grow past batch_size
_SHOW_PROGRESS_FROM = 2048  # texts; below this no bar unless asked


class Backend(str, Enum):
    """Which runtime executes the encoder."""

    TORCH = "torch"
    """The transformers model in PyTorch: every option, gradients through :meth:`Encoder.forward`."""
    ONNX = "onnx"
    """The backbone and pooling exported to ONNX and run by ONNX Runtime (fast CPU inference)."""


class Precision(str, Enum):
    """Numeric precision of the encoder weights."""

    FP32 = "fp32"
    INT8 = "int8"
    """Dynamic int8 quantisation of the linear layers (ONNX backend only)."""


def _parse_enum(kind: type[Enum], value, param: str):
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(repr(v.value) for v in kind)
        raise InvalidInputError(f"Encoder.load: {param} must be one of {valid}, got {value!r}.") from None


def default_threads() -> int:
    """The number of CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op torch threads, then restore the process setting."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _StopForward(Exception):
    """Raised by a forward hook to end the pass early, carrying that block's output ``[b, t, d]``."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("stop")
        self.hidden = hidden


def _transformer_blocks(model: torch.nn.Module, n: int) -> torch.nn.ModuleList | None:
    """The ``n`` stacked blocks (``encoder.layer`` for BERT-like models, ``layers`` or ``h`` for decoders), or None."""
    for path in ("encoder.layer", "layers", "h", "transformer.h", "model.layers"):
        obj: object = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n:
            return obj
    return None


class Encoder:
    """Text -> float32 vectors with a transformers backbone and our pooling.

    Build with :meth:`Encoder.load`. ``model`` (a ``transformers`` ``PreTrainedModel``) and
    ``tokenizer`` are public so training code can take gradients through :meth:`forward`.
    ``Encoder.load(..., backend="onnx")`` returns the subclass
    :class:`embedlab.models.onnx.OnnxEncoder` (no ``model``; same ``encode`` / ``encode_tokens``).
    Subclasses run a batch through ``_embed_batch`` / ``_token_batch`` (int64 arrays ``[b, t]`` in,
    float32 arrays out); batching, checks, truncation warnings and normalisation are shared.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        pooling: Pooling,
        max_length: int,
        normalize_module: bool = True,
        do_lower_case: bool = False,
        source: str = "",
        threads: int | None = None,
        config=None,
    ) -> None:
        self.model = model
        self.config = config if config is not None else model.config
        self.tokenizer = tokenizer
        self.threads = threads
        self.pooling = pooling
        self.max_length = max_length
        self.normalize_module = normalize_module
        self.do_lower_case = do_lower_case
        self.source = source
        self._warned_truncation = False
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        pooling: str | Pooling | None = None,
        device: str = "cpu",
        max_length: int | None = None,
        backend: str | Backend = "torch",
        precision: str | Precision = "fp32",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> "Encoder":
        """Load a bundled model (default: all-MiniLM-L6-v2), a sentence-transformers folder or a transformers folder.

        ``pooling`` overrides the folder's pooling; ``max_length`` (tokens) overrides its limit.
        ``backend="onnx"`` exports the backbone and pooling to ONNX once (cached beside the model, or
        under ``cache_dir`` / ``~/.cache/embedlab/onnx`` when that folder is read-only) and runs it
        with ONNX Runtime; ``precision="int8"`` quantises its linear layers (see
        :mod:`embedlab.models.onnx`). ``threads`` is the number of intra-op CPU threads used while
        encoding (default: torch's own setting for the torch backend, every core this process may
        use for ONNX).
        """
        from transformers import AutoModel

        backend = _parse_enum(Backend, backend, "backend")
        precision = _parse_enum(Precision, precision, "precision")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise InvalidInputError(f"Encoder.load: threads must be a positive int or None, got {threads!r}.")
        path = resolve_model_path(name_or_path)
        config = read_folder(path)
        pooling_mode = Pooling.parse(pooling) if pooling is not None else config.pooling
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise InvalidInputError(
                f"Encoder.load: device must be 'cpu' or an available 'cuda[:i]', got {device!r}. Use device='cpu'."
            )
        if backend is Backend.ONNX:
            if device != "cpu":
                raise UnsupportedError(
                    f"Encoder.load: device must be 'cpu' with backend='onnx', got {device!r}. "
                    "Use backend='torch' for GPUs."
                )
            from embedlab.models.onnx import load_onnx_encoder

            return load_onnx_encoder(path, config, pooling=pooling_mode, max_length=max_length,
                                     precision=precision.value, threads=threads, cache_dir=cache_dir)
        if precision is not Precision.FP32:
            raise UnsupportedError(
                f"Encoder.load: precision must be 'fp32' with backend='torch', got {precision.value!r}. "
                "Load with backend='onnx' for int8."
            )
        if cache_dir is not None:
            raise InvalidInputError(
                "Encoder.load: cache_dir must be None with backend='torch' (it holds ONNX exports), "
                f"got {str(cache_dir)!r}. Pass backend='onnx' or drop cache_dir."
            )
        tokenizer, model = load_pretrained(config.backbone, "weights", AutoModel)
        model.eval().to(device)
        return cls(
            model,
            tokenizer,
            pooling=pooling_mode,
            max_length=resolve_max_length(max_length, model.config, tokenizer, config),
            normalize_module=config.normalize,
            do_lower_case=config.do_lower_case,
            source=str(path),
            threads=threads,
        )

    # ------------------------------------------------------------------ properties
    backend = Backend.TORCH
    precision = Precision.FP32

    @property
    def dim(self) -> int:
        """Width of the full embedding."""
        return int(self.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        """A hex digest of the weights, tokenizer and pooling; it keys embedding caches."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            with torch.no_grad():
                for name, tensor in sorted(self.model.state_dict().items()):
                    h.update(name.encode())
                    h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            h.update(json.dumps([self.pooling.value, self.max_length, self.do_lower_case,
                                 len(self.tokenizer)]).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        extra = ("" if self.backend is Backend.TORCH
                 else f", backend={self.backend.value!r}, precision={self.precision.value!r}")
        return (f"Encoder(source={self.source!r}, dim={self.dim}, layers={self.num_layers}, "
                f"pooling={self.pooling.value!r}, max_length={self.max_length}{extra})")

    # ------------------------------------------------------------------ differentiable path
    def tokenize(self, texts: Sequence[str], *, prompt: str | None = None) -> dict[str, torch.Tensor]:
        """Tokenise and pad ``texts`` into model inputs (tensors ``[b, t]`` on the model's device)."""
        texts = self._check_texts(texts, "tokenize", prompt)
        features = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt")
        return {k: v.to(self.device) for k, v in features.items()}

    def forward(self, features: dict[str, torch.Tensor], *, layers: int | None = None) -> torch.Tensor:
        """Pooled, unnormalised embeddings ``[b, d]`` with gradients (for training)."""
        layer = self._check_layers(layers, "forward")
        hidden = self._hidden(features, layer)
        return pool(hidden, features["attention_mask"], self.pooling)

    def _hidden(self, features: dict[str, torch.Tensor], layer: int | None) -> torch.Tensor:
        """Token states ``[b, t, d]`` after layer ``layer`` (``None``: the last). An earlier layer stops the
        forward pass there (a hook on that block raises with its output), so layer ``L`` costs ``L`` blocks."""
        inputs = {k: v for k, v in features.items() if k != "special_tokens_mask"}
        if layer is None or layer == self.num_layers:
            return self.model(**inputs).last_hidden_state
        blocks = _transformer_blocks(self.model, self.num_layers)
        if blocks is None:  # an architecture whose blocks we cannot find: run every layer
            return self.model(**inputs, output_hidden_states=True).hidden_states[layer]

        def stop(module, args, output):
            raise _StopForward(output[0] if isinstance(output, tuple) else output)

        handle = blocks[layer - 1].register_forward_hook(stop)
        try:
            self.model(**inputs)
        except _StopForward as done:
            return done.hidden
        finally:
            handle.remove()
        raise RuntimeError(f"Encoder: layer {layer} of {type(self.model).__name__} never ran")  # pragma: no cover

    # ------------------------------------------------------------------ inference
    def encode(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        batch_size: int | None = 64,
        max_tokens: int | None = None,
        normalize: bool = True,
        dim: int | None = None,
        layers: int | None = None,
        show_progress: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> Embeddings:
        """Encode ``texts`` into float32 ``[n, dim or self.dim]``, rows in input order.

        ``prompt`` is prepended to every text. ``dim`` keeps the first ``dim`` coordinates (Matryoshka
        truncation; Kusupati et al. 2022) and re-normalises when ``normalize``. ``layers=L`` pools the
        hidden state after layer ``L`` (1..num_layers; 2D Matryoshka, Li et al. 2024) instead of the last.
        Batches hold at most ``batch_size`` texts and at most ``max_tokens`` padded tokens (batch rows
        x longest row); either may be ``None`` (no cap), not both. ``progress(done, total)`` may return
        ``False`` to cancel.
        """
        texts = self._check_texts(texts, "encode", prompt)
        width = self._check_dim(dim)
        layer = self._check_layers(layers, "encode")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch_threads(self.threads):
            for rows, features in self._batches(texts, batch_size, max_tokens, show_progress, progress):
                out[rows] = self._embed_batch(features, layer)
        out = out[:, :width]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out)

    def encode_tokens(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        batch_size: int | None = 64,
        max_tokens: int | None = None,
        normalize: bool = True,
        dim: int | None = None,
        layers: int | None = None,
        dtype: type = np.float32,
        show_progress: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> MultiVectors:
        """Token vectors for late interaction: special and padding tokens dropped, rows in input order.

        Returns :class:`MultiVectors` with ``vectors [N, dim]`` of ``dtype`` (float32 or float16) where
        ``N`` is the total number of kept tokens. ``normalize`` unit-normalises each token vector.
        ``batch_size`` and ``max_tokens`` bound each batch as in :meth:`encode`.
        """
        texts = self._check_texts(texts, "encode_tokens", prompt)
        width = self._check_dim(dim)
        layer = self._check_layers(layers, "encode_tokens")
        if np.dtype(dtype) not in (np.float32, np.float16):
            raise InvalidInputError(f"Encoder.encode_tokens: dtype must be float32 or float16, got {dtype}.")
        pieces: list[np.ndarray | None] = [None] * len(texts)
        with torch_threads(self.threads):
            for rows, features in self._batches(texts, batch_size, max_tokens, show_progress, progress,
                                                special_mask=True):
                hidden = self._token_batch(features, layer)[..., :width]
                if normalize:
                    hidden = hidden / np.maximum(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-12)
                keep = features["attention_mask"].astype(bool) & ~features["special_tokens_mask"].astype(bool)
                for j, row in enumerate(rows):
                    pieces[row] = hidden[j][keep[j]].astype(dtype)
        if not texts:
            return MultiVectors(np.zeros((0, width), dtype=dtype), np.zeros(1, dtype=np.int64))
        return MultiVectors.from_list(pieces)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ one batch, per backend
    def _model_inputs(self, features: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(self.device) for k, v in features.items() if k != "special_tokens_mask"}

    def _embed_batch(self, features: dict[str, np.ndarray], layer: int | None) -> np.ndarray:
        """Pooled, unnormalised float32 ``[b, d]`` for one padded batch (int64 arrays ``[b, t]``)."""
        inputs = self._model_inputs(features)
        with torch.inference_mode():
            hidden = self._hidden(inputs, layer)
            return pool(hidden, inputs["attention_mask"], self.pooling).float().cpu().numpy()

    def _token_batch(self, features: dict[str, np.ndarray], layer: int | None) -> np.ndarray:
        """Token states, float32 ``[b, t, d]``, for one padded batch."""
        with torch.inference_mode():
            return self._hidden(self._model_inputs(features), layer).float().cpu().numpy()

    # ------------------------------------------------------------------ batching
    def _batches(
        self,
        texts: list[str],
        batch_size: int | None,
        max_tokens: int | None,
        show_progress: bool | None,
        progress: ProgressCallback | None,
        *,
        special_mask: bool = False,
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Yield ``(rows, padded model inputs as int64 arrays [b, t])`` over length-sorted batches.

        Texts are sorted by character length, tokenised a chunk at a time (never the whole corpus),
        re-sorted by token count inside the chunk, and cut greedily into batches of at most
        ``batch_size`` rows and ``max_tokens`` padded tokens (rows x the batch's longest row, which is
        its first row): token-budget batching, so short texts share big batches and long ones small
        ones, and padding stays small. ``rows`` are the input positions of the batch.
        """
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                       or batch_size < 1):
            raise InvalidInputError(f"Encoder.encode: batch_size must be a positive int or None, got {batch_size!r}.")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens < 1):
            raise InvalidInputError(f"Encoder.encode: max_tokens must be a positive int or None, got {max_tokens!r}.")
        if batch_size is None and max_tokens is None:
            raise InvalidInputError(
                "Encoder.encode: batch_size and max_tokens must not both be None, got None for both. "
                "Bound the batch by texts (batch_size=64) or by padded tokens (max_tokens=8192)."
            )
        order = np.argsort([-len(t) for t in texts], kind="stable")
        bar = None
        if show_progress or (show_progress is None and len(texts) >= _SHOW_PROGRESS_FROM):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="encode", unit="text")
        pad_id = self.tokenizer.pad_token_id or 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        rows_cap = batch_size or len(texts)
        chunk = max(_CHUNK_TEXTS, (batch_size or 0) * _CHUNK_BATCHES)
        done = 0
        try:
            for start in range(0, len(texts), chunk):
                rows_chunk = order[start : start + chunk]
                enc = self.tokenizer([texts[i] for i in rows_chunk], truncation=True,
                                     max_length=self.max_length, return_special_tokens_mask=special_mask)
                self._warn_truncation(enc)
                lengths = np.array([len(ids) for ids in enc["input_ids"]])
                by_len = np.argsort(-lengths, kind="stable")
                b = 0
                while b < len(by_len):
                    width = int(lengths[by_len[b]])
                    n = rows_cap if max_tokens is None else max(1, min(rows_cap, max_tokens // max(width, 1)))
                    sel = by_len[b : b + n]
                    b += len(sel)
                    features = {}
                    for key, values in enc.items():
                        fill = pad_id if key == "input_ids" else (1 if key == "special_tokens_mask" else 0)
                        arr = np.full((len(sel), width), fill, dtype=np.int64)
                        for j, i in enumerate(sel):
                            v = values[i]
                            if left:
                                arr[j, width - len(v):] = v
                            else:
                                arr[j, : len(v)] = v
                        features[key] = arr
                    yield rows_chunk[sel], features
                    done += len(sel)
                    if bar is not None:
                        bar.update(len(sel))
                    report_progress(progress, done, len(texts))
        finally:
            if bar is not None:
                bar.close()

    def _warn_truncation(self, enc) -> None:
        if self._warned_truncation or not getattr(enc, "encodings", None):
            return
        n = sum(1 for e in enc.encodings if e.overflowing)
        if n:
            self._warned_truncation = True
            warnings.warn(
                f"Encoder.encode: {n} text(s) were longer than max_length={self.max_length} tokens and were "
                "truncated (this warning is shown once per encoder). Split long documents into passages "
                "or load with a larger max_length.",
                UserWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ checks
    def _check_texts(self, texts, method: str, prompt: str | None) -> list[str]:
        if isinstance(texts, str):
            raise InvalidInputError(
                f"Encoder.{method}: texts must be a list of str, got a single str. Wrap it: [text]."
            )
        if texts is None or not hasattr(texts, "__len__"):
            raise InvalidInputError(f"Encoder.{method}: texts must be a list of str, got {type(texts).__name__}.")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(
                    f"Encoder.{method}: texts must be a list of str, got {type(t).__name__} at index {i}. "
                    "Convert or drop non-text items first."
                )
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInputError(f"Encoder.{method}: prompt must be a str or None, got {type(prompt).__name__}.")
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return [prompt + t for t in texts] if prompt else texts

    def _check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.dim
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not 1 <= dim <= self.dim:
            raise InvalidInputError(
                f"Encoder.encode: dim must be an int in [1, {self.dim}], got {dim!r}. "
                "Pick a prefix length no wider than the model."
            )
        return int(dim)

    def _check_layers(self, layers: int | None, method: str) -> int | None:
        if layers is None:
            return None
        if not isinstance(layers, (int, np.integer)) or isinstance(layers, bool) or not 1 <= layers <= self.num_layers:
            raise InvalidInputError(
                f"Encoder.{method}: layers must be an int in [1, {self.num_layers}], got {layers!r}."
            )
        return int(layers)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a sentence-transformers folder (written aside, then renamed into place)."""
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ConflictError(
                f"Encoder.save: path must be a new or empty folder, got {str(path)!r} with files in it. "
                "Pass overwrite=True or choose another folder."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            modes = {key: self.pooling is mode for key, mode in ST_POOLING_KEYS.items()}
            (tmp / "1_Pooling").mkdir()
            (tmp / "1_Pooling" / "config.json").write_text(
                json.dumps({"word_embedding_dimension": self.dim, **modes}, indent=2))
            modules = [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
            if self.normalize_module:
                (tmp / "2_Normalize").mkdir()
                modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                                "type": "sentence_transformers.models.Normalize"})
            (tmp / "modules.json").write_text(json.dumps(modules, indent=2))
            (tmp / "sentence_bert_config.json").write_text(
                json.dumps({"max_seq_length": self.max_length, "do_lower_case": self.do_lower_case}, indent=2))
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path
