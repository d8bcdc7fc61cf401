"""The :class:`Encoder`: texts -> float32 vectors, over a runtime (torch or ONNX) that runs one batch.

The encoder owns everything about texts, once for every runtime: checks, prompts and lower-casing,
length-sorted token-budget batching (:mod:`embedlab.models.batching`), the truncation warning,
normalisation, ``dim`` prefixes, token vectors for late interaction, progress and cancelling. A runtime
(:mod:`embedlab.models.runtime`) turns one padded batch into pooled vectors or token states.

Loads sentence-transformers folders (``modules.json``: Transformer, Pooling, Dense and Normalize modules, in
the layouts of sentence-transformers < 6 and 6.x) and plain transformers folders (read by
:mod:`embedlab.models.folder`, which also resolves the bundled default model without any network), and
saves folders that both embedlab and sentence-transformers load.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from embedlab.errors import ConflictError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.files import replacing
from embedlab.models.alignment import Alignment, folder_space
from embedlab.models.batching import Batch, run_grouped, token_batches
from embedlab.models.folder import (
    find_prebuilt_onnx,
    folder_head,
    load_pretrained,
    read_folder,
    resolve_max_length,
    resolve_model_path,
    write_folder,
)
from embedlab.models.pooling import Pooling
from embedlab.models.runtime import Backend, Precision, Runtime
from embedlab.models.runtime.torch import TorchRuntime
from embedlab.models.token_projection import new_projection, read_token_projection, write_token_projection
from embedlab.params import check_choice, check_int
from embedlab.types import Embeddings, MultiVectors, ProgressCallback, report_progress

_SHOW_PROGRESS_FROM = 2048  # texts; below this no bar unless asked


class Encoder:
    """Text -> float32 vectors with a transformers backbone and our pooling.

    Build with :meth:`Encoder.load`. ``runtime`` runs each padded batch (a
    :class:`~embedlab.models.runtime.torch.TorchRuntime` or an :class:`~embedlab.models.runtime.onnx.OnnxRuntime`);
    ``tokenizer`` is the backbone's. With the torch backend :attr:`model` is the transformers model, so
    training code can take gradients through :meth:`forward` (``layers=L`` stops after block ``L``).
    ``include_prompt=False`` (a sentence-transformers pooling setting) leaves a prompt's tokens out of
    the pooling, as sentence-transformers does. ``prompts`` (name -> text; saved in the folder's
    ``config_sentence_transformers.json``, where training writes the prompts it used) are applied by
    ``prompt_name=``, and ``default_prompt_name`` when a call passes neither ``prompt`` nor ``prompt_name``, as in
    sentence-transformers. ``token_projection`` (a bias-free ``torch.nn.Linear``, see
    :mod:`embedlab.models.token_projection`) maps the token vectors of :meth:`encode_tokens`.
    ``warn_truncation``: warn (once, then it turns ``False``) when texts are cut to ``max_length``; a caller that
    reports truncation itself, such as the server, sets it ``False``. ``alignment`` (an
    :class:`~embedlab.models.alignment.Alignment`, saved with the model) says which other model's index its
    queries may search, and how (:attr:`space` is its own space).
    """

    def __init__(self, runtime: Runtime, tokenizer, *, max_length: int, normalize_module: bool = True,
                 do_lower_case: bool = False, source: str = "", include_prompt: bool = True,
                 token_projection: torch.nn.Linear | None = None, prompts: dict[str, str] | None = None,
                 default_prompt_name: str | None = None, alignment: Alignment | None = None) -> None:
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.normalize_module = normalize_module
        self.do_lower_case = do_lower_case
        self.include_prompt = include_prompt
        self._prompt_lengths: dict[str, int] = {}
        self.source = source
        self.warn_truncation = True
        self._fingerprint: str | None = None
        self.token_projection = token_projection
        self.prompts = dict(prompts or {})  # name -> text, saved with the model (encode(prompt_name=...))
        self.default_prompt_name = default_prompt_name
        self.alignment = alignment
        self._space: str | None = None

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
        tokenizer: str | os.PathLike | None = None,
    ) -> "Encoder":
        """Load a bundled model (default: all-MiniLM-L6-v2), a sentence-transformers folder or a transformers folder.

        A sentence-transformers folder may be written by any version (the pooling config as
        ``pooling_mode_*`` booleans, or 6.x's ``{"embedding_dimension", "pooling_mode", "include_prompt"}``)
        with mean, cls or last-token pooling, then Dense projections (run by either backend) and Normalize.
        ``pooling`` overrides the folder's pooling; ``max_length`` (tokens) overrides its limit.
        ``backend="onnx"`` exports the backbone and pooling to ONNX once (cached beside the model, or
        under ``cache_dir`` / ``~/.cache/embedlab/onnx`` when that folder is read-only) and runs it
        with ONNX Runtime; ``precision="int8"`` quantises its linear layers (see
        :mod:`embedlab.models.runtime.onnx`). ``threads`` is the number of intra-op CPU threads used while
        encoding (default: torch's own setting for the torch backend, every core this process may
        use for ONNX).

        A *prebuilt* ONNX model (a ``.onnx`` file, a folder holding one but no ``config.json``, or the bundled
        ``"paraphrase-MiniLM-L3-v2"``) loads with ``backend="onnx"``: the graph's token states are pooled by
        ``pooling`` (default mean; see :class:`~embedlab.models.runtime.onnx.PrebuiltOnnxRuntime`) and
        ``tokenizer`` names the folder (or bundled model) whose tokenizer it was trained with, when the ONNX
        file's folder has none.
        """
        backend = check_choice(backend, list(Backend), "Encoder.load", "backend")
        precision = check_choice(precision, list(Precision), "Encoder.load", "precision")
        check_int(threads, "Encoder.load", "threads", allow_none=True)
        override = Pooling.parse(pooling) if pooling is not None else None
        prebuilt = find_prebuilt_onnx(name_or_path)
        if prebuilt is not None:
            return cls._load_prebuilt(prebuilt, backend=backend, precision=precision, pooling=override,
                                      device=device, max_length=max_length, threads=threads, tokenizer=tokenizer,
                                      cache_dir=cache_dir)
        if tokenizer is not None:
            raise InvalidInputError(f"Encoder.load: tokenizer must be None for a model folder (it holds its own), got "
                                    f"{str(tokenizer)!r}. tokenizer= is for prebuilt ONNX files without one.")
        path = resolve_model_path(name_or_path)
        folder = read_folder(path, override)
        pooling_mode = folder.pooling
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise InvalidInputError(
                f"Encoder.load: device must be 'cpu' or an available 'cuda[:i]', got {device!r}. Use device='cpu'."
            )
        if backend is Backend.ONNX:
            runtime, tokenizer, length = _load_onnx(path, folder, pooling_mode, device=device, max_length=max_length,
                                                    precision=precision, threads=threads, cache_dir=cache_dir)
        else:
            runtime, tokenizer, length = _load_torch(folder, pooling_mode, device=device, max_length=max_length,
                                                     precision=precision, cache_dir=cache_dir, threads=threads)
        projection = read_token_projection(path, int(runtime.config.hidden_size))
        dim = int(getattr(runtime, "dim", None) or runtime.config.hidden_size)
        return cls(runtime, tokenizer, max_length=length, normalize_module=folder.normalize,
                   do_lower_case=folder.do_lower_case, source=str(path), include_prompt=folder.include_prompt,
                   token_projection=None if projection is None else projection.to(device),
                   prompts=folder.prompts, default_prompt_name=folder.default_prompt_name,
                   alignment=Alignment.read(path, dim))

    @classmethod
    def _load_prebuilt(cls, prebuilt, *, backend: Backend, precision: Precision, pooling: Pooling | None,
                       device: str, max_length: int | None, threads: int | None, tokenizer,
                       cache_dir) -> "Encoder":
        """The encoder of a prebuilt ONNX file (see :meth:`load`)."""
        from transformers import AutoTokenizer

        from embedlab.models.runtime.onnx import PrebuiltOnnxRuntime
        from embedlab.models.runtime.onnx_export import import_onnxruntime

        where = str(prebuilt.file)
        if backend is not Backend.ONNX:
            raise UnsupportedError(f"Encoder.load: backend must be 'onnx' for the prebuilt ONNX model {where!r}, got "
                                   f"{backend.value!r}. Pass backend='onnx' (it has no torch weights to train).")
        if precision is not Precision.FP32 or device != "cpu" or cache_dir is not None:
            raise UnsupportedError(f"Encoder.load: a prebuilt ONNX model runs as it was built (fp32, cpu, no cache), "
                                   f"got precision={precision.value!r}, device={device!r}, cache_dir={cache_dir!r}. "
                                   "Drop those options.")
        source = tokenizer if tokenizer is not None else prebuilt.tokenizer
        if source is None:
            raise ModelNotFoundError(f"Encoder.load: the prebuilt ONNX model {where!r} needs a tokenizer, got a folder "
                                     "without tokenizer files. Pass tokenizer= the folder (or bundled model name) whose "
                                     "tokenizer the model was trained with.")
        folder = resolve_model_path(source)
        backbone = read_folder(folder).backbone if (folder / "modules.json").exists() else folder
        try:
            tok = AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"Encoder.load: tokenizer must name a folder with a tokenizer, got "
                                     f"{str(source)!r}: {exc}") from None
        import_onnxruntime()
        runtime = PrebuiltOnnxRuntime(prebuilt.file, pooling=pooling or Pooling.MEAN, threads=threads)
        limit = min(512, int(getattr(tok, "model_max_length", 512) or 512))
        length = max_length if max_length is not None else (prebuilt.max_length or limit)
        check_int(length, "Encoder.load", "max_length", high=limit)
        return cls(runtime, tok, max_length=length, normalize_module=False, source=where)

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> Backend:
        return self.runtime.backend

    @property
    def precision(self) -> Precision:
        return self.runtime.precision

    @property
    def pooling(self) -> Pooling:
        return self.runtime.pooling

    @property
    def threads(self) -> int | None:
        return self.runtime.threads

    @property
    def config(self):
        """The backbone's transformers config."""
        return self.runtime.config

    @property
    def dim(self) -> int:
        """Width of the full embedding (a Dense module's output width, else the backbone's hidden size)."""
        return int(getattr(self.runtime, "dim", None) or self.config.hidden_size)

    @property
    def token_dim(self) -> int:
        """Width of the token vectors of :meth:`encode_tokens`: the token projection's output width, else the
        backbone's hidden size."""
        if self.token_projection is not None:
            return int(self.token_projection.out_features)
        return int(self.config.hidden_size)

    @property
    def space(self) -> str:
        """This encoder's own embedding space (see :mod:`embedlab.models.alignment`): the hash of its model folder
        and pooling, whatever the runtime or precision; for weights changed in memory (training), of the weights.
        :attr:`alignment` may make it acceptable for the index of another space too."""
        if self._space is None:
            source = Path(self.source) if self.source else None
            self._space = (folder_space(source, self.pooling.value) if source is not None and source.exists()
                           else f"weights-{self.fingerprint}")
        return self._space

    def modified(self, folder: str | os.PathLike | None = None) -> None:
        """Say that the weights changed in memory (training does): cache keys and :attr:`space` are recomputed;
        the space becomes that of ``folder`` when the changed model was saved there."""
        self._fingerprint = None
        self._space = (f"weights-{self.fingerprint}" if folder is None
                       else folder_space(Path(folder), self.pooling.value))

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def running(self):
        """A context manager: the block runs with this encoder's intra-op thread count (:attr:`threads`)."""
        return self.runtime.running()

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def model(self) -> torch.nn.Module:
        """The transformers model (torch backend only)."""
        return self._torch("model", "for a model to train", "Load with backend='torch' for training.").model

    @property
    def fingerprint(self) -> str:
        """A hex digest of the weights, tokenizer and pooling (and backend and precision); it keys embedding caches."""
        if self._fingerprint is None:
            extra = {} if self.include_prompt else {"include_prompt": False}
            fingerprint = self.runtime.fingerprint(max_length=self.max_length, do_lower_case=self.do_lower_case,
                                                   vocab_size=len(self.tokenizer), **extra)
            if self.token_projection is not None or self.default_prompt_name is not None:  # else it stays as it was
                h = hashlib.sha256(fingerprint.encode())
                if self.token_projection is not None:
                    h.update(self.token_projection.weight.detach().cpu().contiguous().numpy().tobytes())
                if self.default_prompt_name is not None:  # encode() without a prompt applies it
                    h.update(b"default-prompt\0" + self.prompts[self.default_prompt_name].encode())
                fingerprint = h.hexdigest()[:16]
            self._fingerprint = fingerprint
        return self._fingerprint

    def __repr__(self) -> str:
        extra = ("" if self.backend is Backend.TORCH
                 else f", backend={self.backend.value!r}, precision={self.precision.value!r}")
        return (f"Encoder(source={self.source!r}, dim={self.dim}, layers={self.num_layers}, "
                f"pooling={self.pooling.value!r}, max_length={self.max_length}{extra})")

    # ------------------------------------------------------------------ differentiable path
    def tokenize(self, texts: Sequence[str], *, prompt: str | None = None, prompt_name: str | None = None,
                 special_tokens_mask: bool = False) -> dict[str, torch.Tensor]:
        """Tokenise and pad ``texts`` into model inputs (tensors ``[b, t]`` on the model's device).

        When the model leaves the prompt out of its pooling (``include_prompt=False``) and ``prompt`` is given,
        the features also hold ``"pooling_mask"`` (for :meth:`forward`; it is not an input of :attr:`model`);
        ``special_tokens_mask=True`` adds the tokenizer's ``"special_tokens_mask"`` (1 on [CLS], [SEP] ...; not
        an input either), the tokens :meth:`encode_tokens` drops.
        """
        prompt = self._resolve_prompt(prompt, prompt_name, "tokenize")
        texts = self._check_texts(texts, "tokenize", prompt)
        features = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt", return_special_tokens_mask=special_tokens_mask)
        features = {k: v.to(self.device) for k, v in features.items()}
        n_prompt = self._prompt_length(prompt)
        if n_prompt:
            mask = features["attention_mask"]
            features["pooling_mask"] = mask * (mask.cumsum(dim=1) > n_prompt).to(mask.dtype)
        return features

    def forward(self, features: dict[str, torch.Tensor], *, layers: int | None = None) -> torch.Tensor:
        """Pooled, unnormalised embeddings ``[b, dim]`` with gradients (for training); ``layers`` as in :meth:`encode`.

        With a Dense head its parameters are ``encoder.runtime.head``'s, beside :attr:`model`'s. Rows run in
        groups of similar length, each trimmed to its own longest row (:func:`length_groups`): the same result,
        up to float rounding, for a fraction of the padded compute of one pass."""
        runtime = self._torch("forward", "for a differentiable forward", "Load with backend='torch' for training.")
        layer = self._check_layers(layers, "forward")
        return self._grouped(features, lambda f: runtime.forward(f, layer))

    def forward_layers(self, features: dict[str, torch.Tensor], layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """``{L: forward(features, layers=L)}`` for every ``L`` in ``layers`` (``[b, dim]`` each, with gradients), from
        one forward pass through the deepest of them: what 2-D Matryoshka losses (Starbucks, 2DMSE) train on."""
        runtime = self._torch("forward_layers", "for a differentiable forward", "Load with backend='torch' for training.")
        wanted = tuple(dict.fromkeys(self._check_layers(layer, "forward_layers") for layer in layers))
        if not wanted:
            raise InvalidInputError("Encoder.forward_layers: layers must name at least one layer, got none.")
        stacked = self._grouped(features, lambda f: torch.stack(runtime.forward_layers(f, wanted), dim=1))
        return {layer: stacked[:, i] for i, layer in enumerate(wanted)}

    def forward_tokens(self, features: dict[str, torch.Tensor], *, layers: int | None = None) -> torch.Tensor:
        """Token vectors ``[b, t, token_dim]`` with gradients (for late-interaction training): the backbone's token
        states through :attr:`token_projection` when there is one; unnormalised, special tokens kept; padding
        positions hold no meaningful values (mask them with the attention mask; rows run in length groups, as in
        :meth:`forward`)."""
        runtime = self._torch("forward_tokens", "for a differentiable forward", "Load with backend='torch' for training.")
        layer = self._check_layers(layers, "forward_tokens")

        def tokens(f):
            hidden = runtime.hidden_states(f, layer)
            return hidden if self.token_projection is None else self.token_projection(hidden)

        return self._grouped(features, tokens, per_token=True)

    def _grouped(self, features: dict[str, torch.Tensor], run, *, per_token: bool = False) -> torch.Tensor:
        """``run`` over ``features`` in length groups (:func:`~embedlab.models.batching.run_grouped`)."""
        return run_grouped(features, run, per_token=per_token,
                           right_padded=getattr(self.tokenizer, "padding_side", "right") == "right")

    def add_token_projection(self, dim: int, *, seed: int = 0) -> torch.nn.Linear:
        """Give the encoder a new trainable token projection (backbone width -> ``dim``, orthonormal rows drawn
        from ``seed``; see :mod:`embedlab.models.token_projection`) and return it. An encoder that has one of
        width ``dim`` keeps it; one of another width is an error."""
        dim = check_int(dim, "Encoder.add_token_projection", "dim", high=int(self.config.hidden_size))
        if self.token_projection is not None:
            if self.token_projection.out_features != dim:
                raise ConflictError(f"Encoder.add_token_projection: dim must match the projection this encoder has, "
                                    f"got {dim} against {self.token_projection.out_features}. Load the base model "
                                    "to train another width.")
            return self.token_projection
        self.token_projection = new_projection(int(self.config.hidden_size), dim, seed=seed).to(self.device)
        self._fingerprint = None
        return self.token_projection

    # ------------------------------------------------------------------ inference
    def encode(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        prompt_name: str | None = None,
        batch_size: int | None = 64,
        max_tokens: int | None = None,
        normalize: bool = True,
        dim: int | None = None,
        layers: int | None = None,
        show_progress: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> Embeddings:
        """Encode ``texts`` into float32 ``[n, dim or self.dim]``, rows in input order.

        ``prompt`` is prepended to every text (``prompt_name`` names one of :attr:`prompts` instead; with
        neither, the model's ``default_prompt_name`` applies when it has one); a model saved with
        ``include_prompt=False`` pools only the text's tokens (the prompt's tokens, counted as
        sentence-transformers counts them, still attend).
        ``normalize`` gives unit vectors (a model's final Normalize module is this step). ``dim`` keeps the first ``dim`` coordinates (Matryoshka
        truncation; Kusupati et al. 2022) and re-normalises when ``normalize``. ``layers=L`` pools the
        hidden state after layer ``L`` (1..num_layers; 2D Matryoshka, Li et al. 2024) instead of the last.
        Batches hold at most ``batch_size`` texts and at most ``max_tokens`` padded tokens (batch rows
        x longest row); either may be ``None`` (no cap), not both. ``progress(done, total)`` may return
        ``False`` to cancel.
        """
        layer = self._check_layers(layers, "encode")
        return self._pooled(texts, "encode", None if layer is None else (layer,), prompt=prompt,
                            prompt_name=prompt_name, batch_size=batch_size, max_tokens=max_tokens, normalize=normalize,
                            dim=dim, show_progress=show_progress, progress=progress)[0]

    def encode_layers(
        self,
        texts: Sequence[str],
        layers: Sequence[int],
        *,
        prompt: str | None = None,
        prompt_name: str | None = None,
        batch_size: int | None = 64,
        max_tokens: int | None = None,
        normalize: bool = True,
        dim: int | None = None,
        show_progress: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[int, Embeddings]:
        """``{L: encode(texts, layers=L, ...)}`` for every ``L`` in ``layers``, from one forward pass per batch that
        stops after the deepest of them (torch backend): evaluating a 2-D Matryoshka model (Li et al. 2024) at
        several depths costs one encoding at the deepest. Arguments as in :meth:`encode`."""
        if isinstance(layers, (int, str)) or not hasattr(layers, "__iter__") or not list(layers):
            raise InvalidInputError(f"Encoder.encode_layers: layers must be a non-empty list of layer numbers, got "
                                    f"{layers!r}. Pass e.g. [2, 4, 6].")
        wanted = tuple(dict.fromkeys(self._check_layers(layer, "encode_layers") for layer in layers))
        vectors = self._pooled(texts, "encode_layers", wanted, prompt=prompt, prompt_name=prompt_name,
                               batch_size=batch_size, max_tokens=max_tokens, normalize=normalize, dim=dim,
                               show_progress=show_progress, progress=progress)
        return dict(zip(wanted, vectors))

    def _pooled(self, texts, method: str, layers: tuple[int, ...] | None, *, prompt, prompt_name, batch_size,
                max_tokens, normalize, dim, show_progress, progress) -> list[Embeddings]:
        """The pooled vectors ``[n, dim]`` of ``texts`` at each of ``layers`` (``None``: the runtime's last)."""
        prompt = self._resolve_prompt(prompt, prompt_name, method)
        texts = self._check_texts(texts, method, prompt)
        width = self._check_dim(dim, method)
        n_prompt = self._prompt_length(prompt)
        outs = [np.empty((len(texts), self.dim), dtype=np.float32) for _ in (layers or (None,))]
        with self.runtime.running():
            for rows, features in self._batches(texts, method, batch_size, max_tokens, show_progress, progress):
                if n_prompt:
                    mask = features["attention_mask"]
                    features["pooling_mask"] = mask * (np.cumsum(mask, axis=1) > n_prompt)
                if layers is None:
                    outs[0][rows] = self.runtime.embed(features)
                else:
                    for out, vectors in zip(outs, self.runtime.embed_layers(features, layers)):
                        out[rows] = vectors
        result = []
        for out in outs:
            out = out[:, :width]
            if normalize:
                out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
            result.append(np.ascontiguousarray(out))
        return result

    def encode_tokens(
        self,
        texts: Sequence[str],
        *,
        prompt: str | None = None,
        prompt_name: str | None = None,
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
        ``N`` is the total number of kept tokens. ``normalize`` unit-normalises each token vector. Token
        vectors are the backbone's through :attr:`token_projection` when the model has one (width
        :attr:`token_dim`: no pooling, so no Dense head, and a prompt's tokens are kept whatever
        ``include_prompt``). ``batch_size`` and ``max_tokens`` bound each batch as in :meth:`encode`.
        """
        prompt = self._resolve_prompt(prompt, prompt_name, "encode_tokens")
        texts = self._check_texts(texts, "encode_tokens", prompt)
        width = self._check_dim(dim, "encode_tokens", self.token_dim)
        layer = self._check_layers(layers, "encode_tokens")
        if np.dtype(dtype) not in (np.float32, np.float16):
            raise InvalidInputError(f"Encoder.encode_tokens: dtype must be float32 or float16, got {dtype}.")
        pieces: list[np.ndarray | None] = [None] * len(texts)
        weight = (None if self.token_projection is None
                  else self.token_projection.weight.detach().cpu().numpy().astype(np.float32).T)
        with self.runtime.running():
            for rows, features in self._batches(texts, "encode_tokens", batch_size, max_tokens, show_progress,
                                                progress, special_mask=True):
                hidden = self.runtime.token_states(features, layer)
                hidden = (hidden if weight is None else hidden @ weight)[..., :width]
                if normalize:
                    hidden = hidden / np.maximum(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-12)
                keep = features["attention_mask"].astype(bool) & ~features["special_tokens_mask"].astype(bool)
                for j, row in enumerate(rows):
                    pieces[row] = hidden[j][keep[j]].astype(dtype)
        if not texts:
            return MultiVectors(np.zeros((0, width), dtype=dtype), np.zeros(1, dtype=np.int64))
        return MultiVectors.from_list(pieces)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ batches, progress, truncation
    def _batches(self, texts: list[str], method: str, batch_size: int | None, max_tokens: int | None,
                 show_progress: bool | None, progress: ProgressCallback | None, *,
                 special_mask: bool = False) -> Iterator[Batch]:
        """The token batches of ``texts`` (:func:`~embedlab.models.batching.token_batches`) with the progress
        bar and callback advanced after each one."""
        warn = None if not self.warn_truncation else functools.partial(self._warn_truncation, method)
        batches = token_batches(self.tokenizer, texts, max_length=self.max_length, batch_size=batch_size,
                                max_tokens=max_tokens, owner=f"Encoder.{method}", special_mask=special_mask,
                                on_truncated=warn)
        bar = None
        if show_progress or (show_progress is None and len(texts) >= _SHOW_PROGRESS_FROM):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=method, unit="text")
        done = 0
        try:
            for rows, features in batches:
                yield rows, features
                done += len(rows)
                if bar is not None:
                    bar.update(len(rows))
                report_progress(progress, done, len(texts))
        finally:
            if bar is not None:
                bar.close()

    def _warn_truncation(self, method: str, n: int) -> None:
        if not self.warn_truncation:
            return
        self.warn_truncation = False
        warnings.warn(
            f"Encoder.{method}: {n} text(s) were longer than max_length={self.max_length} tokens and were "
            "truncated (this warning is shown once per encoder). Split long documents into passages "
            "or load with a larger max_length.",
            UserWarning,
            stacklevel=5,  # the caller of encode: <- encode <- _batches <- token_batches' generator <- here
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

    def _check_dim(self, dim: int | None, method: str, full: int | None = None) -> int:
        full = full or self.dim
        if dim is None:
            return full
        return check_int(dim, f"Encoder.{method}", "dim", high=full,
                         hint="Pick a prefix length no wider than the model.")

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None, method: str) -> str | None:
        """The prompt text of a call: ``prompt``, or the text ``prompt_name`` names, or the default prompt."""
        if prompt_name is None:
            if prompt is None and self.default_prompt_name is not None:
                return self.prompts[self.default_prompt_name]
            return prompt
        if prompt is not None:
            raise InvalidInputError(f"Encoder.{method}: pass prompt or prompt_name, not both, got prompt={prompt!r} "
                                    f"and prompt_name={prompt_name!r}.")
        if prompt_name not in self.prompts:
            raise InvalidInputError(f"Encoder.{method}: prompt_name must be one of the model's prompts "
                                    f"{sorted(self.prompts)}, got {prompt_name!r}. Pass prompt= with the text, or "
                                    "train with that prompt (it is saved with the model).")
        return self.prompts[prompt_name]

    def _prompt_length(self, prompt: str | None) -> int:
        """How many leading tokens of each row to leave out of the pooling: 0 unless the model excludes its
        prompt; else the prompt's tokens with the tokenizer's leading special token, not a trailing one
        (sentence-transformers' count)."""
        if self.include_prompt or not prompt:
            return 0
        if prompt not in self._prompt_lengths:
            ids = list(self.tokenizer([prompt])["input_ids"][0])
            trailing = bool(ids) and ids[-1] in set(self.tokenizer.all_special_ids)
            self._prompt_lengths[prompt] = len(ids) - trailing
        return self._prompt_lengths[prompt]

    def _check_layers(self, layers: int | None, method: str) -> int | None:
        if layers is None:
            return None
        if not self.runtime.per_layer:
            raise UnsupportedError(
                f"Encoder.{method}: layers must be None with backend={self.backend.value!r} (the exported graph "
                f"holds only the last layer), got {layers!r}. Load with backend='torch' to pool an intermediate layer."
            )
        return check_int(layers, f"Encoder.{method}", "layers", high=self.num_layers)

    def _torch(self, method: str, purpose: str, fix: str) -> TorchRuntime:
        """The torch runtime, or an UnsupportedError naming ``Encoder.<method>``."""
        if not isinstance(self.runtime, TorchRuntime):
            raise UnsupportedError(
                f"Encoder.{method}: backend must be 'torch' {purpose}, got {self.backend.value!r}. {fix}"
            )
        return self.runtime

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a sentence-transformers folder (written aside, then renamed into place)."""
        runtime = self._torch("save", "to save a model folder",
                              f"Load the source {self.source!r} with backend='torch' and save that; "
                              "the ONNX build is cached beside it.")
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ConflictError(
                f"Encoder.save: path must be a new or empty folder, got {str(path)!r} with files in it. "
                "Pass overwrite=True or choose another folder."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.mkdir()
            write_folder(tmp, runtime.model, self.tokenizer, pooling=self.pooling, normalize=self.normalize_module,
                         max_length=self.max_length, do_lower_case=self.do_lower_case,
                         include_prompt=self.include_prompt, head=runtime.head, prompts=self.prompts,
                         default_prompt_name=self.default_prompt_name)
            if self.token_projection is not None:
                write_token_projection(tmp, self.token_projection)
            if self.alignment is not None:
                self.alignment.write(tmp)
        return path


# ---------------------------------------------------------------- one loader per runtime
def _load_torch(folder, pooling: Pooling, *, device: str, max_length: int | None, precision: Precision,
                cache_dir, threads: int | None) -> tuple[TorchRuntime, object, int]:
    """``(runtime, tokenizer, max_length)`` for the torch backend."""
    from transformers import AutoModel

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
    tokenizer, model = load_pretrained(folder.backbone, "weights", AutoModel)
    model.eval().to(device)
    head = folder_head(folder, model.config)
    length = resolve_max_length(max_length, model.config, tokenizer, folder)
    runtime = TorchRuntime(model, pooling=pooling, threads=threads, head=None if head is None else head.to(device))
    return runtime, tokenizer, length


def _load_onnx(path: Path, folder, pooling: Pooling, *, device: str, max_length: int | None, precision: Precision,
               threads: int | None, cache_dir) -> tuple[object, object, int]:
    """``(runtime, tokenizer, max_length)`` for the ONNX backend: the cached build, exported first if needed."""
    if device != "cpu":
        raise UnsupportedError(
            f"Encoder.load: device must be 'cpu' with backend='onnx', got {device!r}. Use backend='torch' for GPUs."
        )
    from transformers import AutoConfig

    from embedlab.models.runtime.onnx import OnnxRuntime
    from embedlab.models.runtime.onnx_export import import_onnxruntime

    import_onnxruntime()
    tokenizer, config = load_pretrained(folder.backbone, "config", AutoConfig)
    length = resolve_max_length(max_length, config, tokenizer, folder)
    runtime = OnnxRuntime.load(path, folder.backbone, tokenizer, config=config, pooling=pooling, precision=precision,
                               max_length=length, threads=threads, cache_dir=cache_dir,
                               head=folder_head(folder, config), pooling_mask=not folder.include_prompt)
    return runtime, tokenizer, length
