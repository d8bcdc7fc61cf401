"""Cross-encoders: a (query, document) pair in, one relevance score out.

The pair is read as one input, ``[CLS] query [SEP] document [SEP]``, by a transformers
``*ForSequenceClassification`` model with one output label, whose logit is the score (monoBERT: Nogueira & Cho
2019, "Passage Re-ranking with BERT", arXiv:1901.04085). :meth:`CrossEncoder.predict` returns the sigmoid of the
logit by default, as sentence-transformers' ``CrossEncoder.predict`` does for one label.

:meth:`CrossEncoder.load` reads

- a sentence-transformers cross-encoder folder (any version: 6.x's ``modules.json`` with
  ``transformer_task: sequence-classification``, or a plain transformers folder of a ``*ForSequenceClassification``
  model, as 2.x-5.x wrote), or
- any BERT-family encoder folder or bundled model (the default: all-MiniLM-L6-v2), whose weights start the backbone
  under a fresh classification head drawn from ``seed`` -- the starting point for training one
  (:func:`embedlab.train.fit` with :class:`~embedlab.train.BinaryCrossEntropy` or
  :class:`~embedlab.train.ListwiseSoftmax`).

:meth:`CrossEncoder.save` writes the folder sentence-transformers 6.x writes, which its ``CrossEncoder(folder)``
loads with the same scores. ``backend="onnx"`` traces the model to ONNX once, checks it against torch on probe
pairs, and caches it beside the model (or under ``cache_dir``) keyed by the weights' hash and library versions,
like :class:`~embedlab.models.Encoder` (:mod:`embedlab.models.runtime.onnx`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from embedlab.errors import ConflictError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.files import replacing
from embedlab.models.batching import token_batches
from embedlab.models.folder import resolve_model_path
from embedlab.models.runtime import Backend
from embedlab.models.runtime.threads import default_threads, torch_threads
from embedlab.models.runtime.torch import hash_weights
from embedlab.params import check_choice, check_int
from embedlab.types import ProgressCallback, report_progress

_OWNER = "CrossEncoder.load"
FORMAT_VERSION = 1  # of the ONNX build and its manifest
ACTIVATION = "torch.nn.modules.activation.Sigmoid"  # what sentence-transformers applies to one label's logit
_PROBE = [("what is a cat", "a small domesticated carnivorous mammal with soft fur"),
          ("x", ""), ("a longer query, with punctuation: commas; and digits 1234", "short")]


class CrossEncoder:
    """Scores (query, document) pairs; see the module docstring. Build it with :meth:`load`.

    ``max_length`` caps the tokens of a pair (the longer side loses tokens first). ``threads`` is the intra-op CPU
    thread count while scoring or training (torch: None leaves torch's setting; ONNX: every core by default).
    """

    def __init__(self, tokenizer, *, model: torch.nn.Module | None, session=None, input_names: Sequence[str] = (),
                 max_length: int, threads: int | None, source: str, weights_digest: str) -> None:
        self.tokenizer = tokenizer
        self._model = model
        self._session = session
        self._input_names = list(input_names)
        self.max_length = max_length
        self.threads = threads
        self.source = source
        self._weights_digest = weights_digest
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None, *, backend: str | Backend = "torch",
             max_length: int | None = None, threads: int | None = None, seed: int = 0,
             cache_dir: str | os.PathLike | None = None) -> "CrossEncoder":
        """Load a cross-encoder folder, or start one from an encoder folder / bundled model (default: the default
        model) with a classification head drawn from ``seed``. Never downloads.

        ``max_length`` (tokens per pair) defaults to the folder's ``max_seq_length``, else the tokenizer's limit
        (at most 512). ``backend="onnx"`` runs a cached, checked ONNX export (``cache_dir`` chooses where the build
        is cached when the model folder is read-only)."""
        backend = check_choice(backend, list(Backend), _OWNER, "backend")
        check_int(threads, _OWNER, "threads", allow_none=True)
        check_int(seed, _OWNER, "seed", low=0)
        if backend is not Backend.ONNX and cache_dir is not None:
            raise InvalidInputError(f"{_OWNER}: cache_dir must be None with backend='torch' (it holds ONNX exports), "
                                    f"got {str(cache_dir)!r}. Pass backend='onnx' or drop cache_dir.")
        path = resolve_model_path(name_or_path, owner=_OWNER)
        backbone = _backbone_folder(path)
        tokenizer, model = _load_model(backbone, seed)
        limit = min(512, int(getattr(tokenizer, "model_max_length", 512) or 512),
                    int(getattr(model.config, "max_position_embeddings", 512)))
        length = max_length if max_length is not None else min(limit, _folder_max_length(path) or limit)
        check_int(length, _OWNER, "max_length", high=limit)
        digest = _digest(model)
        if backend is Backend.TORCH:
            return cls(tokenizer, model=model, max_length=length, threads=threads, source=str(path),
                       weights_digest=digest)
        onnx_path, names = _onnx_build(model, tokenizer, digest, path, cache_dir, length)
        from embedlab.models.runtime.onnx_export import make_session

        session = make_session(onnx_path, threads or default_threads())
        return cls(tokenizer, model=None, session=session, input_names=names, max_length=length, threads=threads,
                   source=str(path), weights_digest=digest)

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> Backend:
        return Backend.TORCH if self._model is not None else Backend.ONNX

    @property
    def model(self) -> torch.nn.Module:
        """The transformers ``*ForSequenceClassification`` model (torch backend only)."""
        if self._model is None:
            raise UnsupportedError(f"CrossEncoder.model: the torch model exists with backend='torch' only, got "
                                   f"backend='onnx'. Load {self.source!r} with backend='torch' to train or save it.")
        return self._model

    @property
    def fingerprint(self) -> str:
        """A hex digest of the weights, tokenizer, ``max_length`` and backend; it keys caches of scores."""
        if self._fingerprint is None:
            if self._model is not None and self._weights_digest is None:
                self._weights_digest = _digest(self._model)
            h = hashlib.sha256(f"cross-encoder\0{self._weights_digest}\0{self.max_length}\0{len(self.tokenizer)}\0"
                               f"{self.backend.value}".encode())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint

    def modified(self, folder: str | os.PathLike | None = None) -> None:
        """Say that the weights changed in memory (training does): the fingerprint is recomputed."""
        self._weights_digest, self._fingerprint = None, None
        if folder is not None:
            self.source = str(folder)

    def running(self) -> contextlib.AbstractContextManager:
        """The block runs with this model's intra-op torch thread count."""
        return torch_threads(self.threads)

    def __repr__(self) -> str:
        return f"CrossEncoder({self.source!r}, backend={self.backend.value!r}, max_length={self.max_length})"

    # ------------------------------------------------------------------ scoring
    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 32, activation: bool = True,
                progress: ProgressCallback | None = None) -> np.ndarray:
        """float32 ``[len(pairs)]`` scores of ``(query, document)`` pairs: the sigmoid of the logit, or the logit
        with ``activation=False`` (the same order either way). Batches are length-sorted; ``progress(done, total)``
        hears the pairs scored."""
        pairs = _check_pairs(pairs, "CrossEncoder.predict")
        check_int(batch_size, "CrossEncoder.predict", "batch_size")
        out = np.zeros(len(pairs), np.float32)
        done = 0
        with self.running(), torch.inference_mode():
            for rows, features in token_batches(self.tokenizer, pairs, max_length=self.max_length,
                                                batch_size=batch_size, max_tokens=None, owner="CrossEncoder.predict"):
                if self._model is not None:
                    tensors = {k: torch.from_numpy(v).to(self._device) for k, v in features.items()}
                    out[rows] = self._model(**tensors).logits[:, 0].float().cpu().numpy()
                else:
                    out[rows] = self._session.run(["logits"], {n: features[n] for n in self._input_names})[0][:, 0]
                done += len(rows)
                report_progress(progress, done, len(pairs))
        return (1.0 / (1.0 + np.exp(-out))).astype(np.float32) if activation else out

    def scores(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Logits ``[len(pairs)]`` (float32, with gradients; torch backend): what the training losses use."""
        pairs = _check_pairs(pairs, "CrossEncoder.scores")
        enc = self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return self.model(**{k: v.to(self._device) for k, v in enc.items()}).logits[:, 0]

    def unreadable(self, texts: Sequence[str]) -> float:
        """The share of the tokens of ``texts`` that the tokenizer maps to its unknown token (0.0 to 1.0)."""
        return unknown_share(self.tokenizer, texts)

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a sentence-transformers 6.x cross-encoder folder (written aside, then renamed into place);
        ``modules.json`` is written last."""
        model = self.model
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ConflictError(f"CrossEncoder.save: path must be a new or empty folder, got {str(path)!r} with files "
                                "in it. Pass overwrite=True or choose another folder.")
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.mkdir()
            with _quiet_transformers():
                model.save_pretrained(str(tmp))
                self.tokenizer.save_pretrained(str(tmp))
            (tmp / "sentence_bert_config.json").write_text(json.dumps(
                {"transformer_task": "sequence-classification", "max_seq_length": self.max_length,
                 "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                 "module_output_name": "scores"}, indent=2))
            (tmp / "config_sentence_transformers.json").write_text(json.dumps(
                {"model_type": "CrossEncoder", "activation_fn": ACTIVATION, "prompts": {},
                 "default_prompt_name": None}, indent=2))
            (tmp / "modules.json").write_text(json.dumps(
                [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}],
                indent=2))
        return path


def unknown_share(tokenizer, texts: Sequence[str]) -> float:
    """The share (0.0 to 1.0) of the tokens of ``texts`` that ``tokenizer`` maps to its unknown token; 0.0 for a
    tokenizer without one. What a reranker's ``unreadable`` answers."""
    unk = tokenizer.unk_token_id
    ids = [i for t in texts for i in tokenizer(t, add_special_tokens=False)["input_ids"]]
    return sum(i == unk for i in ids) / max(len(ids), 1) if unk is not None else 0.0


# ---------------------------------------------------------------- loading pieces
def _check_pairs(pairs, owner: str) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise InvalidInputError(f"{owner}: pairs must be a list of (query, document) str pairs, got "
                                f"{type(pairs).__name__}. Pass [(query, document), ...].")
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise InvalidInputError(f"{owner}: pairs[{i}] must be a (query, document) pair of str, got "
                                    f"{str(pair)[:80]!r}. Pass [(query, document), ...].")
        out.append((pair[0], pair[1]))
    return out


def _backbone_folder(path: Path) -> Path:
    """The folder holding the transformers config and weights: ``path`` itself, or the Transformer module's path
    of a sentence-transformers ``modules.json``."""
    modules = path / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text())
            first = next(e for e in entries if str(e.get("type", "")).endswith("Transformer"))
            return path / first.get("path", "")
        except (ValueError, StopIteration, AttributeError, TypeError):
            raise ModelNotFoundError(f"{_OWNER}: {modules} must list a Transformer module, got none readable. "
                                     "Pass a sentence-transformers or transformers model folder.") from None
    return path


def _folder_max_length(path: Path) -> int | None:
    try:
        return int(json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length") or 0) or None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load report (the classifier "newly initialized") is expected here, not the user's business."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _load_model(backbone: Path, seed: int):
    """``(tokenizer, model)``: the folder's sequence classifier, or its encoder under a new one-label head drawn
    from ``seed``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(backbone), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{_OWNER}: {str(backbone)!r} must hold a transformers config and tokenizer, got an "
                                 f"error loading them: {exc}") from None
    classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if classifier and config.num_labels != 1:
        raise UnsupportedError(f"{_OWNER}: a cross-encoder must have one output label (a relevance score), got "
                               f"{config.num_labels} labels in {str(backbone)!r}. Use a one-label reranker.")
    try:
        with torch.random.fork_rng(), _quiet_transformers():
            torch.manual_seed(seed)  # the new head's initial weights
            model = AutoModelForSequenceClassification.from_pretrained(
                str(backbone), local_files_only=True, num_labels=1, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{_OWNER}: {str(backbone)!r} must hold transformers weights of a BERT-family "
                                 f"model, got an error loading them: {exc}") from None
    return tokenizer, model.eval()


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    hash_weights(h, sorted(model.state_dict().items()))
    return h.hexdigest()[:32]


class _Logits(torch.nn.Module):
    """The exported graph: the inputs in ``input_names`` order -> logits ``[b, 1]``."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.input_names, inputs))).logits


def _onnx_build(model, tokenizer, digest: str, source: Path, cache_dir, max_length: int) -> tuple[Path, list[str]]:
    """``(model.onnx, input names)`` of the cached, checked ONNX export of ``model``."""
    from embedlab.models.runtime.onnx import cache_roots, cached_build, file_sha256, library_versions
    from embedlab.models.runtime.onnx_export import import_onnxruntime, make_session, model_input_names, trace

    import_onnxruntime(_OWNER)
    names = model_input_names(model, tokenizer, _OWNER)
    expected = {"format_version": FORMAT_VERSION, "kind": "cross-encoder", "weights": digest, **library_versions()}
    key = "ce-" + hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()[:16]

    def build(folder: Path) -> None:
        enc = tokenizer([q for q, _ in _PROBE], [d for _, d in _PROBE], padding=True, truncation=True,
                        max_length=max_length, return_tensors="np")
        features = {n: np.asarray(enc[n], np.int64) for n in names}
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
        trace(_Logits(model, names).eval(), features, names, folder / "model.onnx", output_names=["logits"],
              dynamic_axes=axes, model_type=getattr(model.config, "model_type", "?"), owner=_OWNER)
        got = make_session(folder / "model.onnx", 1).run(["logits"], features)[0]
        with torch.inference_mode():
            want = model(**{n: torch.from_numpy(features[n]) for n in names}).logits.numpy()
        gap = float(np.abs(got - want).max())
        if not gap <= 1e-3:
            raise UnsupportedError(f"{_OWNER}: backend='onnx' must reproduce the torch logits, got a gap of {gap:.2e} "
                                   "on the probe pairs (at most 1e-3). Use backend='torch' for this model.")
        manifest = {**expected, "onnx_sha256": file_sha256(folder / "model.onnx"), "inputs": names,
                    "probe_gap": gap}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))

    onnx_path, manifest = cached_build(key, expected, cache_roots(source, cache_dir), build, owner=_OWNER)
    return onnx_path, list(manifest["inputs"])
