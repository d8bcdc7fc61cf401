"""Distillation into a teacher's space: LEAF (Vujanic & Rueckstiess 2025, "LEAF: Knowledge Distillation of Text
Embedding Models with Teacher-Aligned Representations").

A small *student* is trained to reproduce a *teacher*'s embeddings of the same texts: no labels, no negatives,
only the teacher's vectors as targets (MSE, and optionally a cosine term). Because the student lands in the
teacher's space, its query vectors search an index the teacher built (asymmetric retrieval: the cheap model on
the hot path, the documents encoded once by the good one). The student records the teacher's space
(:class:`~embedlab.models.alignment.Alignment`, method ``"distilled"``), which is what lets a collection built by
the teacher accept it for queries.

- :func:`truncated_student`: the teacher's first ``layers`` transformer blocks (LEAF's and DistilBERT's
  initialisation), or pass any smaller torch :class:`~embedlab.models.Encoder` as the student;
- :func:`onnx_student`: a trainable copy of a smaller model that ships only as an ONNX graph (LEAF's "any smaller
  model", e.g. the bundled paraphrase-MiniLM-L3-v2): the teacher's architecture at the graph's depth, its weights;
- :func:`teacher_targets`: the teacher's raw (unnormalised) vectors of the texts, computed once and cached on disk
  keyed by the teacher's fingerprint and the texts' hash (:mod:`embedlab.models.cache`);
- :class:`Distillation`: the loss, ``mse * mean_i ||s_i - t_i||^2 + cosine * mean_i (1 - cos(s_i, t_i))`` over the
  student's pooled vectors ``s [b, d]`` and the targets ``t [b, d]``;
- :func:`distill`: the three together through :func:`embedlab.train.fit.fit`.

Each model tokenises its own text, so the teacher and student may have different tokenizers. A student narrower
than its teacher gets a trainable linear map (a bias-free Dense head) to the teacher's width.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models.alignment import Alignment
from embedlab.params import check_int
from embedlab.train.data import Batches, PairDataset, prompt_for
from embedlab.train.fit import TrainResult, fit
from embedlab.train.losses import _columns, _positive_float, embed

_OWNER = "distill"


def _torch_encoder(encoder, owner: str, role: str):
    from embedlab.models.runtime import Backend

    if getattr(encoder, "backend", None) is not Backend.TORCH:
        raise UnsupportedError(f"{owner}: the {role} must be an Encoder loaded with backend='torch', got "
                               f"{getattr(encoder, 'backend', type(encoder).__name__)!r}. Load it with backend='torch'.")
    return encoder


def truncated_student(teacher, layers: int, *, blocks: Sequence[int] | None = None):
    """A student made of ``teacher``'s embeddings, ``layers`` of its transformer blocks, pooling and head (a copy:
    training it leaves the teacher as it is). ``teacher`` is a torch :class:`~embedlab.models.Encoder`; ``layers``
    must be below the teacher's depth (an equal depth is a copy, not a student). ``blocks`` picks which teacher blocks
    (0-based, increasing) the student keeps, e.g. ``(1, 3, 5)`` as DistilBERT (Sanh et al. 2019) takes every other
    one; default the first ``layers`` (LEAF's initialisation)."""
    from embedlab.models import Encoder
    from embedlab.models.runtime.torch import TorchRuntime, _transformer_blocks

    owner = "truncated_student"
    _torch_encoder(teacher, owner, "teacher")
    depth = teacher.num_layers
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers < depth:
        raise InvalidInputError(f"{owner}: layers must be an int in [1, {depth - 1}] (fewer than the teacher's {depth} "
                                f"blocks), got {layers!r}. A student is shallower than its teacher.")
    keep = list(range(layers)) if blocks is None else list(blocks)
    if len(keep) != layers or keep != sorted(set(keep)) or not all(isinstance(b, int) and 0 <= b < depth for b in keep):
        raise InvalidInputError(f"{owner}: blocks must be {layers} increasing, distinct block indices in [0, {depth - 1}], "
                                f"got {blocks!r}.")
    model = copy.deepcopy(teacher.model)
    stack = _transformer_blocks(model, depth)
    if stack is None:
        raise UnsupportedError(f"{owner}: the teacher's blocks must be found to truncate them, got a "
                               f"{type(model).__name__} without encoder.layer / layers / h. Pass a smaller model "
                               "as the student instead.")
    kept = [stack[i] for i in keep]
    del stack[:]
    stack.extend(kept)
    model.config.num_hidden_layers = layers
    head = copy.deepcopy(teacher.runtime.head)
    runtime = TorchRuntime(model, pooling=teacher.pooling, threads=teacher.threads, head=head)
    return Encoder(runtime, teacher.tokenizer, max_length=teacher.max_length,
                   normalize_module=teacher.normalize_module, do_lower_case=teacher.do_lower_case,
                   source="", include_prompt=teacher.include_prompt, prompts=teacher.prompts,
                   default_prompt_name=teacher.default_prompt_name)


def onnx_student(teacher, prebuilt):
    """A trainable torch student holding the weights of ``prebuilt``, a prebuilt-ONNX
    :class:`~embedlab.models.Encoder` of a BERT-like model exported from transformers (e.g.
    ``Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx")``), for a student initialised from a smaller model
    that ships without torch weights. The module is :func:`truncated_student`'s (``teacher``'s architecture at the
    graph's depth) with every parameter replaced by the graph's tensor of that name; the graph's linear weights,
    which exporters leave unnamed (``onnx::MatMul_470``, float ``[in, out]``), are named by the bias their MatMul's
    output is added to and transposed to torch's ``[out, in]``. The student keeps ``prebuilt``'s tokenizer,
    ``max_length`` and pooling, so it encodes as ``prebuilt`` does (cosine ~1 to its vectors) until trained.

    Every parameter but the pooler's (unused by pooled embeddings) must be found once with its shape, else
    :class:`~embedlab.errors.UnsupportedError` names what is missing or mismatched."""
    import onnx
    from onnx import numpy_helper

    from embedlab.models import Encoder
    from embedlab.models.runtime.torch import TorchRuntime

    owner = "onnx_student"
    _torch_encoder(teacher, owner, "teacher")
    path = getattr(prebuilt.runtime, "onnx_path", None) if isinstance(prebuilt, Encoder) else None
    if path is None or getattr(prebuilt.runtime, "per_layer", True):
        raise InvalidInputError(f"{owner}: prebuilt must be an Encoder of a prebuilt ONNX file (Encoder.load(name, "
                                f"backend='onnx') of a bundled ONNX model), got {prebuilt!r}.")
    if prebuilt.dim != teacher.config.hidden_size or not 1 <= prebuilt.num_layers < teacher.num_layers:
        raise UnsupportedError(f"{owner}: the graph must be a shallower model of the teacher's width "
                               f"{teacher.config.hidden_size}, got {prebuilt.num_layers} layers of width "
                               f"{prebuilt.dim} against the teacher's {teacher.num_layers} layers. Pick a smaller "
                               "model of the same family, or use truncated_student.")
    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {name: node for node in graph.node for name in node.input}
    for node in graph.node:  # name each unnamed linear weight by the bias added to its MatMul's output
        add = consumers.get(node.output[0]) if node.op_type == "MatMul" else None
        weight = next((i for i in node.input if i in tensors and tensors[i].ndim == 2), None)
        bias = next((i for i in add.input if i.endswith(".bias") and i in tensors), None) if add is not None and \
            add.op_type == "Add" else None
        if weight is not None and bias is not None:
            tensors[bias[: -len("bias")] + "weight"] = tensors.pop(weight).T
    student = truncated_student(teacher, prebuilt.num_layers)
    found, problems = {}, []
    for key, param in student.model.named_parameters():
        names = [n for n in tensors if n == key or n.endswith("." + key)]
        if len(names) == 1 and tuple(tensors[names[0]].shape) == tuple(param.shape):
            found[key] = torch.from_numpy(np.array(tensors[names[0]], dtype=np.float32))  # a writable copy
        elif not key.startswith("pooler."):
            problems.append(f"{key} {tuple(param.shape)}: " + (f"{[tuple(tensors[n].shape) for n in names]}"
                                                                   if names else "not in the graph"))
    if problems:
        raise UnsupportedError(f"{owner}: the graph {path.name} must hold every parameter of a {prebuilt.num_layers}-"
                               f"layer {type(student.model).__name__} with its shape, got: {'; '.join(problems[:6])}"
                               f"{' ...' if len(problems) > 6 else ''}. Use a graph exported from that architecture.")
    with torch.no_grad():
        for key, param in student.model.named_parameters():
            if key in found:
                param.copy_(found[key])
    runtime = TorchRuntime(student.model, pooling=prebuilt.pooling, threads=teacher.threads, head=student.runtime.head)
    student = Encoder(runtime, prebuilt.tokenizer, max_length=prebuilt.max_length,
                      normalize_module=teacher.normalize_module, do_lower_case=prebuilt.do_lower_case, source="",
                      include_prompt=teacher.include_prompt, prompts=teacher.prompts,
                      default_prompt_name=teacher.default_prompt_name)
    probe = ["a probe sentence: the student must encode it as the graph does", "and a second, shorter one"]
    a, b = (np.asarray(e.encode(probe), dtype=np.float64) for e in (student, prebuilt))
    cos = float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    if cos < 0.999:  # same tensors, other arithmetic: e.g. another head count or activation
        raise UnsupportedError(f"{owner}: the student must encode as the graph {path.name} does, got a cosine of "
                               f"{cos:.4f} between them with every tensor matched: the graph's architecture differs "
                               "from the teacher's (attention heads, activation). Use a graph of the teacher's family.")
    return student


def widen(student, dim: int) -> None:
    """Append a trainable, bias-free linear map ``student.dim -> dim`` (a Dense head module, identity activation,
    initialised to the first ``student.dim`` rows of the identity) to ``student``'s head, in place."""
    from embedlab.models.head import Dense, Head

    runtime = _torch_encoder(student, "widen", "student").runtime
    dense = Dense(student.dim, dim, bias=False, activation="Identity")
    with torch.no_grad():
        dense.linear.weight.copy_(torch.eye(dim, student.dim))
    modules = list(runtime.head) if runtime.head is not None else []
    runtime.head = Head(*modules, dense.to(student.device))
    runtime.dim = dim
    student.modified()


def teacher_targets(teacher, texts: Sequence[str], *, cache: str | os.PathLike | None | bool = None,
                    batch_size: int = 64, show_progress: bool | None = None) -> np.ndarray:
    """The teacher's raw (unnormalised, no prompt) vectors of ``texts``, float32 ``[n, d]``, rows in order.

    ``cache``: a folder for :func:`~embedlab.models.cache.cached_encode` (None: its default, ``$EMBEDLAB_CACHE`` or
    ``.cache/embeddings``; False: no cache). Any runtime may serve as teacher (ONNX is the fastest on CPU)."""
    options = {"normalize": False, "batch_size": batch_size, "show_progress": show_progress}
    if cache is False:
        return teacher.encode(list(texts), **options)
    from embedlab.models.cache import cached_encode

    return cached_encode(teacher, list(texts), root=cache, normalize=False, batch_size=batch_size)


class Distillation(torch.nn.Module):
    """The LEAF loss (see the module docstring) over batches of the ``texts`` kind (column ``text``).

    ``texts [n]`` and ``targets [n, d]`` (float32, :func:`teacher_targets`) are the teacher's vectors of every text
    the batches may hold; ``mse`` and ``cosine`` weigh the two terms (at least one positive)."""

    def __init__(self, texts: Sequence[str], targets: np.ndarray, *, mse: float = 1.0, cosine: float = 0.0) -> None:
        super().__init__()
        owner = type(self).__name__
        targets = np.asarray(targets)
        if targets.ndim != 2 or targets.shape[0] != len(texts) or not np.isfinite(targets).all():
            raise InvalidInputError(f"{owner}: targets must be finite floats of shape ({len(texts)}, d), one row per "
                                    f"text, got shape {targets.shape}. Compute them with teacher_targets(texts).")
        for name, value in (("mse", mse), ("cosine", cosine)):
            if value != 0:
                _positive_float(value, owner, name)
        if not (mse > 0 or cosine > 0):
            raise InvalidInputError(f"{owner}: mse or cosine must be positive, got mse={mse!r} and cosine={cosine!r}.")
        self.mse, self.cosine = float(mse), float(cosine)
        self._rows = {t: i for i, t in enumerate(texts)}
        self.register_buffer("targets", torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)),
                             persistent=False)

    def forward(self, encoder, batch) -> torch.Tensor:
        owner = f"{type(self).__name__}.forward"
        _columns(batch, ("text",), owner)
        texts = list(batch["text"])
        missing = next((t for t in texts if t not in self._rows), None)
        if missing is not None:
            raise InvalidInputError(f"{owner}: every text must have a teacher target, got {missing[:80]!r} without "
                                    "one. Build the loss with the texts the batches are drawn from.")
        target = self.targets[torch.as_tensor([self._rows[t] for t in texts])]
        student = embed(encoder, texts, prompt_for(batch, "text"))
        if student.shape[1] != target.shape[1]:
            raise InvalidInputError(f"{owner}: the student must produce the teacher's width {target.shape[1]}, got "
                                    f"{student.shape[1]}. Use distill(), which adds a linear map, or widen(student, "
                                    f"{target.shape[1]}).")
        loss = student.new_zeros(())
        if self.mse:
            loss = loss + self.mse * (student - target).pow(2).sum(dim=1).mean()
        if self.cosine:
            loss = loss + self.cosine * (1 - torch.nn.functional.cosine_similarity(student, target, dim=1)).mean()
        return loss

    def extra_repr(self) -> str:
        return f"texts={len(self._rows)}, mse={self.mse}, cosine={self.cosine}"


def distill(teacher, student, texts: Sequence[str] | Mapping[str, Sequence[str]], *, steps: int, batch_size: int = 64, lr: float = 1e-4,
            mse: float = 1.0, cosine: float = 0.0, weights: Mapping[str, int] | None = None, seed: int = 0,
            out: str | os.PathLike | None = None,
            cache: str | os.PathLike | None | bool = None, show_progress: bool | None = None,
            **fit_options) -> TrainResult:
    """Distil ``teacher`` into ``student`` (a torch :class:`~embedlab.models.Encoder`, e.g. :func:`truncated_student`)
    on ``texts`` (documents and queries alike, unlabelled) for ``steps`` optimiser steps; the student is trained in
    place and records the teacher's space. ``texts`` may be ``{name: texts}`` (e.g. ``{"queries": ..., "documents":
    ...}``): the groups are then drawn in turn (round robin), so a small set of queries weighs as much as a large
    corpus, or ``weights[name]`` batches of each group per turn (:class:`~embedlab.train.data.Batches`), e.g.
    ``{"documents": 1, "queries": 3}`` for a student that will only encode queries. ``out`` (a run folder, as in
    :func:`~embedlab.train.fit.fit`) receives the student; other ``fit_options`` go to :func:`~embedlab.train.fit.fit`
    (``evaluate=``, ``checkpoint_every=`` ...).

    A student deeper than its teacher is an error; a narrower one is given a linear map to the teacher's width
    (:func:`widen`)."""
    _torch_encoder(student, _OWNER, "student")
    if student.num_layers > teacher.num_layers:
        raise InvalidInputError(f"{_OWNER}: the student must not be deeper than its teacher, got {student.num_layers} "
                                f"layers against the teacher's {teacher.num_layers}. Use truncated_student(teacher, "
                                "layers) or a smaller model.")
    check_int(batch_size, _OWNER, "batch_size")
    groups = dict(texts) if isinstance(texts, Mapping) else {"texts": texts}
    data = {name: PairDataset.from_texts(group, source=f"distillation texts {name!r}") for name, group in groups.items()}
    for name, group in data.items():
        if len(group) < batch_size:
            raise InvalidInputError(f"{_OWNER}: texts ({name!r}) must hold at least batch_size={batch_size} distinct "
                                    f"texts, got {len(group)}. Pass more texts or a smaller batch_size.")
    unique = list(dict.fromkeys(t for group in data.values() for t in group.batch(range(len(group)))["text"]))
    targets = teacher_targets(teacher, unique, cache=cache, batch_size=batch_size, show_progress=show_progress)
    if student.dim != targets.shape[1]:
        widen(student, int(targets.shape[1]))
    student.alignment = Alignment(space=teacher.space, model=teacher.source or repr(teacher), method="distilled",
                                  fit={"teacher_fingerprint": teacher.fingerprint, "texts": len(unique), "steps": steps})
    loss = Distillation(unique, targets, mse=mse, cosine=cosine)
    batches = Batches(data, batch_size, seed=seed, sampling="round_robin", weights=weights)
    return fit(student, batches, loss, steps=steps, lr=lr, seed=seed,
               out=Path(out) if out is not None else None, show_progress=show_progress, **fit_options)
