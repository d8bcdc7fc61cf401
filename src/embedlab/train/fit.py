"""The trainer: :func:`fit` fine-tunes an :class:`~embedlab.models.Encoder` or a
:class:`~embedlab.models.CrossEncoder` (torch backend) with one loss per data set.

AdamW (Loshchilov & Hutter 2019; no decay on biases and norm weights, as the transformers trainer does), a linear
warm-up to ``lr`` then a linear decay to 0, gradient-norm clipping, everything seeded. A batch is a ``dict`` of
column lists (``{"anchor", "positive", "negative"?}`` or ``{"sentence1", "sentence2", "score"}``) drawn from
``batches``, an iterator of ``(data_set_name, batch)``; a loss is a ``torch.nn.Module`` whose
``forward(encoder, batch)`` returns a scalar tensor.

Checkpoints resume exactly, and nothing is pickled (:mod:`embedlab.train.checkpoint` has their layout).
A run's folder ``out`` holds ``checkpoints/last`` (every ``checkpoint_every`` steps), ``checkpoints/best`` (the best
evaluation by ``metric``) and, at the end, the trained model itself (``encoder.save``), ``modules.json`` moved in last
so that ``out`` only reads as a model once it is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from embedlab.errors import ConflictError, EmbedlabError, InvalidInputError, UnsupportedError
from embedlab.params import check_int
from embedlab.train.checkpoint import (read_checkpoint, resolve_checkpoint, rng_state, seed_all, set_rng_state,
                                       write_checkpoint, write_final)
from embedlab.types import ProgressCallback, report_progress

_OWNER = "fit"
_ANY = "*"  # the data-set key when one loss serves every data set


class NonFiniteLossError(EmbedlabError, FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite; the message names the step and the last checkpoint."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` did. ``losses`` has one float per optimiser step of the whole run (a resumed run keeps the
    earlier ones); ``evaluations`` one dict ``{"step": s, **metrics}`` per evaluation; ``best`` is
    ``{"step", "metric", "value", "path"}`` (``path`` is None without ``out``) or None without ``metric``.
    ``pairs`` (rows of the batches trained on), ``seconds`` (wall time) and ``train_seconds`` (the training steps
    alone: no checkpoints, evaluation or final save) count this call only; ``pairs_per_second`` is
    ``pairs / train_seconds``, the figure to compare with another trainer's throughput."""

    steps: int
    losses: tuple[float, ...]
    evaluations: tuple[dict, ...]
    best: dict | None
    out: Path | None
    last_checkpoint: Path | None
    resumed_from: int | None
    pairs: int
    seconds: float
    train_seconds: float

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.train_seconds if self.train_seconds > 0 else 0.0


def fit(
    encoder,
    batches: Iterable[tuple[str, dict]],
    losses: torch.nn.Module | Mapping[str, torch.nn.Module],
    *,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 2e-5,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    device: str = "cpu",
    out: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    evaluate: Callable[[object], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    metric: str | None = None,
    progress: ProgressCallback | None = None,
    show_progress: bool | None = None,
    old_encoder=None,
    compat_weight: float = 1.0,
) -> TrainResult:
    """Train ``encoder`` in place on ``batches`` and return a :class:`TrainResult`.

    ``losses`` is one loss for every data set or ``{name: loss}`` (each batch goes to its data set's loss); a loss's
    own trainable parameters (e.g. a projection) are trained too. Pass exactly one of ``steps`` (optimiser steps) and
    ``epochs`` (``epochs * len(batches)`` steps). ``iter(batches)`` is taken once and again whenever it runs out (an
    iterable starts its next epoch; an exhausted iterator ends the run with an error). ``warmup`` is the fraction of
    the steps spent warming up; ``max_grad_norm=None`` turns clipping off. Torch's, numpy's and Python's global RNGs
    are seeded with ``seed`` for the run and given back as they were afterwards.

    ``out`` is the run's folder (new or empty unless resuming): checkpoints every ``checkpoint_every`` steps, the
    best one by ``metric``, and the final model (see the module docstring). The batches' prompts
    (:meth:`~embedlab.train.data.Batches.model_prompts`: ``"query"``, ``"document"`` ...) are added to
    ``encoder.prompts`` at the end and saved with it, so ``encode(prompt_name="query")`` applies the training
    prompt. ``resume`` is a checkpoint folder (or a run folder, meaning its ``checkpoints/last``) written by the
    same model and run config; ``batches`` must then have ``state_dict()`` / ``load_state_dict()``, and the run
    continues exactly where it stopped.

    ``evaluate(encoder) -> {name: float}`` (e.g. ``lambda e: evaluate_sts(e, pairs)``) runs every ``eval_every``
    steps and after the last; ``metric`` names the value (higher is better) whose best step is kept.
    ``progress(step, total)`` returning False cancels (:class:`~embedlab.errors.CancelledError`; checkpoints written
    before stay, nothing else is written). ``show_progress`` draws a bar with the loss and pairs/s (default: when
    stderr is a terminal). A NaN or infinite loss or gradient raises :class:`NonFiniteLossError` naming the step.
    The encoder's ``threads`` (``Encoder.load(..., threads=)``) is the intra-op thread count while training.

    ``old_encoder`` (backward-compatible training, :class:`~embedlab.train.compat.BackwardCompatible`): every
    contrastive loss gets ``compat_weight`` times the InfoNCE of the new queries against the old model's vectors of
    the documents, and the trained encoder records the old model's space (its queries may search the old index).
    """
    from embedlab.models.runtime import Backend

    if getattr(encoder, "backend", None) is not Backend.TORCH:
        raise UnsupportedError(f"{_OWNER}: encoder must be an Encoder or CrossEncoder loaded with backend='torch', got "
                               f"{getattr(encoder, 'backend', type(encoder).__name__)!r}. Load it with backend='torch'.")
    loss_map = _check_losses(losses)
    if old_encoder is not None:
        from embedlab.train.compat import BackwardCompatible

        loss_map = {name: BackwardCompatible(loss, old_encoder, compat_weight) for name, loss in loss_map.items()}
    total = _total_steps(batches, steps, epochs)
    lr = _check_float(lr, "lr", low=0.0, low_open=True)
    weight_decay = _check_float(weight_decay, "weight_decay", low=0.0)
    warmup = _check_float(warmup, "warmup", low=0.0, high=1.0)
    if max_grad_norm is not None:
        max_grad_norm = _check_float(max_grad_norm, "max_grad_norm", low=0.0, low_open=True)
    seed = check_int(seed, _OWNER, "seed", low=0)
    check_int(checkpoint_every, _OWNER, "checkpoint_every", allow_none=True)
    check_int(eval_every, _OWNER, "eval_every", allow_none=True)
    if checkpoint_every is not None and out is None:
        raise InvalidInputError(f"{_OWNER}: out must be a folder when checkpoint_every is set, got None. Pass out=.")
    if evaluate is None and (eval_every is not None or metric is not None):
        raise InvalidInputError(f"{_OWNER}: evaluate must be a callable when eval_every or metric is set, got None. "
                                "Pass evaluate=lambda encoder: {...}.")
    if evaluate is not None and not callable(evaluate):
        raise InvalidInputError(f"{_OWNER}: evaluate must be a callable encoder -> dict, got {type(evaluate).__name__}.")
    if (out is not None or resume is not None) and not (hasattr(batches, "state_dict")
                                                        and hasattr(batches, "load_state_dict")):
        raise InvalidInputError(f"{_OWNER}: batches must have state_dict() and load_state_dict() to checkpoint or "
                                f"resume, got {type(batches).__name__}. Use embedlab.train.data.Batches.")
    _check_device(device)
    out = None if out is None else Path(out)
    if out is not None and resume is None and out.exists() and any(out.iterdir()):
        raise ConflictError(f"{_OWNER}: out must be a new or empty folder, got {str(out)!r} with files in it. Pass "
                            f"resume={str(out / 'checkpoints' / 'last')!r} to continue that run, or choose another folder.")

    modules = _modules(encoder, loss_map)
    for module in modules.values():
        module.to(device)
    named = _trainable(modules)
    config = {"steps": steps, "epochs": epochs, "total_steps": total, "lr": lr, "weight_decay": weight_decay,
              "warmup": warmup, "max_grad_norm": max_grad_norm, "seed": seed,
              "losses": {name: _loss_settings(loss) for name, loss in loss_map.items()},
              "parameters": hashlib.sha256(json.dumps([[n, list(p.shape)] for n, p in named]).encode()).hexdigest()[:16]}
    config_fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    model_fingerprint = encoder.fingerprint
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                                  fused=all(p.dtype == torch.float32 for _, p in named))
    warm = math.ceil(warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))

    state = {"step": 0, "losses": [], "evaluations": [], "best": None, "last": None}
    resumed_from = None
    params = [p for _, p in named]
    training = {name: m.training for name, m in modules.items()}
    saved_rng = rng_state(device)
    started, pairs, train_seconds = time.perf_counter(), 0, 0.0
    bar, saved = None, None
    threads = contextlib.ExitStack()
    threads.enter_context(encoder.running())  # the encoder's intra-op thread count holds for training too
    try:
        seed_all(seed, device)
        if resume is not None:
            ckpt = resolve_checkpoint(resume)
            meta = read_checkpoint(ckpt, modules, optimizer, scheduler, batches, device,
                                    model_fingerprint=model_fingerprint, config=config,
                                    config_fingerprint=config_fingerprint)
            state.update(step=meta["step"], losses=list(meta["losses"]), evaluations=list(meta["evaluations"]),
                         best=meta["best"], last=ckpt)
            resumed_from = meta["step"]
        ckpts = None if out is None else out / "checkpoints"
        if show_progress or (show_progress is None and sys.stderr.isatty()):
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=state["step"], desc="train", unit="step")
        for module in modules.values():
            module.train()
        source = iter(batches)
        for step in range(state["step"] + 1, total + 1):
            tick = time.perf_counter()
            name, batch, source = _next_batch(batches, source, step)
            loss_fn = loss_map.get(name, loss_map.get(_ANY))
            if loss_fn is None:
                raise InvalidInputError(f"{_OWNER}: losses must have a loss for data set {name!r}, got losses for "
                                        f"{sorted(loss_map)}. Add {{{name!r}: loss}}.")
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(encoder, batch)
            if not (torch.is_tensor(loss) and loss.ndim == 0 and loss.requires_grad):
                raise InvalidInputError(f"{_OWNER}: the loss for {name!r} must return a scalar tensor with gradients, "
                                        f"got {_describe(loss)} at step {step}. Return loss.mean() of the batch.")
            value = float(loss.detach())
            if not math.isfinite(value):
                _diverged("loss", value, step, name, state["last"])
            loss.backward()
            if max_grad_norm is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
                if not math.isfinite(norm):
                    _diverged("gradient norm", norm, step, name, state["last"])
            optimizer.step()
            scheduler.step()
            state["step"] = step
            state["losses"].append(value)
            pairs += len(next(iter(batch.values())))
            train_seconds += time.perf_counter() - tick
            if bar is not None:
                bar.update(1)
                rate = pairs / max(train_seconds, 1e-9)
                recent = state["losses"][-20:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", pairs_s=f"{rate:.1f}", refresh=False)
            report_progress(progress, step, total)
            if evaluate is not None and ((eval_every and step % eval_every == 0) or step == total):
                if _evaluate(evaluate, encoder, modules, step, metric, state, device) and ckpts is not None:
                    state["best"]["path"] = str(ckpts / "best")
                    write_checkpoint(ckpts / "best", encoder, modules, optimizer, scheduler, batches, state, device,
                                      model_fingerprint, config, config_fingerprint)
            if ckpts is not None and checkpoint_every and step % checkpoint_every == 0:
                write_checkpoint(ckpts / "last", encoder, modules, optimizer, scheduler, batches, state, device,
                                  model_fingerprint, config, config_fingerprint)
                state["last"] = ckpts / "last"
        for module in modules.values():
            module.eval()
        if hasattr(batches, "model_prompts") and hasattr(encoder, "prompts"):  # saved with the model: inference applies what training used
            encoder.prompts.update(batches.model_prompts())
        if old_encoder is not None:  # saved with the model: the old index accepts its queries
            from embedlab.models.alignment import Alignment

            encoder.alignment = Alignment(space=old_encoder.space, model=old_encoder.source or repr(old_encoder),
                                          method="compatible", fit={"compat_weight": float(compat_weight),
                                                                    "steps": int(state["step"])})
        if out is not None:
            write_final(encoder, out)
            saved = out
    finally:
        if bar is not None:
            bar.close()
        for name, module in modules.items():
            module.train(training[name])
        set_rng_state(saved_rng, device)
        threads.close()
        encoder.modified(saved)  # the weights changed: caches keyed by the old fingerprint must not match
    return TrainResult(steps=state["step"], losses=tuple(state["losses"]), evaluations=tuple(state["evaluations"]),
                       best=state["best"], out=out, last_checkpoint=state["last"], resumed_from=resumed_from,
                       pairs=pairs, seconds=time.perf_counter() - started,
                       train_seconds=train_seconds)


# ---------------------------------------------------------------- checks
def _check_losses(losses) -> dict[str, torch.nn.Module]:
    if isinstance(losses, torch.nn.Module):
        return {_ANY: losses}
    if isinstance(losses, Mapping) and losses and all(isinstance(k, str) and isinstance(v, torch.nn.Module)
                                                       for k, v in losses.items()):
        return dict(losses)
    raise InvalidInputError(f"{_OWNER}: losses must be a torch.nn.Module or a non-empty {{data set name: Module}} "
                            f"dict, got {_describe(losses)}. Pass e.g. InfoNCE() or {{'pairs': InfoNCE()}}.")


def _total_steps(batches, steps, epochs) -> int:
    if (steps is None) == (epochs is None):
        raise InvalidInputError(f"{_OWNER}: pass exactly one of steps and epochs, got steps={steps!r} and "
                                f"epochs={epochs!r}. Pass steps=N or epochs=E.")
    if steps is not None:
        return check_int(steps, _OWNER, "steps", hint="Train for at least one step.")
    epochs = check_int(epochs, _OWNER, "epochs", hint="Train for at least one epoch.")
    try:
        per_epoch = len(batches)
    except TypeError:
        raise InvalidInputError(f"{_OWNER}: batches must have a len() (batches per epoch) with epochs=, got "
                                f"{type(batches).__name__} without one. Pass steps= instead.") from None
    if per_epoch < 1:
        raise InvalidInputError(f"{_OWNER}: batches must hold at least one batch, got len(batches) == {per_epoch}. "
                                "Check the data (and that the batch size is not larger than it).")
    return epochs * per_epoch


def _check_float(value, name: str, *, low: float, high: float | None = None, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if low_open else value >= low) and (high is None or value <= high):
        return float(value)
    expect = (f"a number in [{low}, {high}]" if high is not None
              else f"a number {'>' if low_open else '>='} {low}")
    raise InvalidInputError(f"{_OWNER}: {name} must be {expect}, got {value!r}.")


def _check_device(device) -> None:
    ok = device == "cpu" or (isinstance(device, str) and device.startswith("cuda") and torch.cuda.is_available())
    if not ok:
        raise InvalidInputError(f"{_OWNER}: device must be 'cpu' or an available 'cuda[:i]', got {device!r}. "
                                "Use device='cpu'.")


def _loss_settings(loss: torch.nn.Module) -> dict:
    """A loss's class and plain settings (temperature, margin, ...): a resumed run must use the same."""
    plain = {k: v for k, v in sorted(vars(loss).items()) if not k.startswith("_") and k != "training"
             and isinstance(v, (bool, int, float, str)) and (not isinstance(v, float) or math.isfinite(v))}
    return {"type": type(loss).__qualname__, **plain}


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}" + ("" if value.requires_grad else " without gradients")
    return type(value).__name__


def _next_batch(batches, source, step: int):
    """``(name, batch, source)``; a new ``iter(batches)`` when ``source`` runs out (the next epoch)."""
    for attempt in range(2):
        try:
            item = next(source)
            break
        except StopIteration:
            if attempt == 0:
                source = iter(batches)
    else:
        if step == 1:
            raise InvalidInputError(f"{_OWNER}: batches must yield at least one batch, got an empty iterator. "
                                    "Check the data (and that the batch size is not larger than it).")
        raise InvalidInputError(f"{_OWNER}: batches must yield a batch for every step, got none at step {step}. "
                                "Pass an iterable that starts a new epoch on iter(), or fewer steps.")
    ok = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict)
    if not ok or not item[1] or not all(isinstance(v, list) for v in item[1].values()) \
            or not len(next(iter(item[1].values()))):
        raise InvalidInputError(f"{_OWNER}: batches must yield (name, {{column: non-empty list}}), got "
                                f"{_describe(item)} {str(item)[:80]} at step {step}.")
    return item[0], item[1], source


def _diverged(what: str, value: float, step: int, name: str, last: Path | None):
    kept = (f"The last good checkpoint is {str(last)!r}." if last is not None
            else "No checkpoint was written (pass out= and checkpoint_every= to keep one).")
    raise NonFiniteLossError(f"{_OWNER}: the {what} must be finite, got {value} at step {step} (data set {name!r}). "
                             f"{kept} Lower lr, or check that batch's data.")


# ---------------------------------------------------------------- modules and evaluation
def _modules(encoder, loss_map) -> dict[str, torch.nn.Module]:
    modules = {"model": encoder.model}
    head = getattr(getattr(encoder, "runtime", None), "head", None)
    if head is not None:
        modules["head"] = head
    if getattr(encoder, "token_projection", None) is not None:
        modules["token_projection"] = encoder.token_projection
    for name, loss in loss_map.items():
        modules[f"loss.{name}"] = loss
    return modules


def _trainable(modules) -> list[tuple[str, torch.nn.Parameter]]:
    seen, named = set(), []
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append((f"{prefix}.{name}", p))
    return named


def _evaluate(evaluate, encoder, modules, step, metric, state, device) -> bool:
    """Run ``evaluate`` in eval mode with the RNG streams untouched; True when it is the best ``metric`` so far."""
    rng = rng_state(device)
    for module in modules.values():
        module.eval()
    try:
        scores = evaluate(encoder)
    finally:
        for module in modules.values():
            module.train()
        set_rng_state(rng, device)
    if not isinstance(scores, Mapping):
        raise InvalidInputError(f"{_OWNER}: evaluate must return a dict of floats, got {_describe(scores)}.")
    scores = {str(k): float(v) for k, v in scores.items()}
    state["evaluations"].append({"step": step, **scores})
    if metric is None:
        return False
    if metric not in scores:
        raise InvalidInputError(f"{_OWNER}: metric must be one of the names evaluate returns {sorted(scores)}, "
                                f"got {metric!r}.")
    best = state["best"]
    if best is None or scores[metric] > best["value"]:
        state["best"] = {"step": step, "metric": metric, "value": scores[metric], "path": None}
        return True
    return False
