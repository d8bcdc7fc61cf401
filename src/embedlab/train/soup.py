"""Model soups: average the weights of several fine-tuned checkpoints of one base (Wortsman et al. 2022, "Model
soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference time",
Algorithm 1 for the greedy soup), as KaLM-Embedding-V2 and NV-Retriever merge their checkpoints.

- ``uniform``: the mean of every checkpoint's weights;
- ``greedy``: checkpoints sorted by their dev metric, best first; each is added to the soup only if the soup's dev
  metric does not drop (so the greedy soup is never worse on dev than the best single checkpoint).

Checkpoints must share one architecture (the same parameter names and shapes, config and tokenizer vocabulary)
and one base: fine-tunes of one model stay close in weight space, so each checkpoint's weight matrices (each
centred on its mean, so that layer norms' ones do not count) must have a cosine of at least :data:`SAME_BASE_COSINE`
with the first's (models trained from different initialisations are near 0).
One checkpoint gives itself (a copy), whatever the method.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from embedlab.errors import ConflictError, InvalidInputError
from embedlab.params import check_choice

METHODS = ("uniform", "greedy")
SAME_BASE_COSINE = 0.5
_OWNER = "soup"


@dataclass(frozen=True)
class SoupResult:
    """The soup ``encoder`` (torch, in memory), the indices of the checkpoints in it (``members``, in the order they
    were added), every single checkpoint's dev score (``scores``, None without ``evaluate``) and the soup's
    (``soup_score``)."""

    encoder: object
    members: tuple[int, ...]
    scores: tuple[float, ...] | None
    soup_score: float | None


def _load(checkpoint):
    from embedlab.models import Encoder
    from embedlab.models.runtime import Backend

    encoder = Encoder.load(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if getattr(encoder, "backend", None) is not Backend.TORCH:
        raise InvalidInputError(f"{_OWNER}: checkpoints must be model folders or torch Encoders, got "
                                f"{type(checkpoint).__name__} {getattr(encoder, 'backend', '')!r}. Load them with "
                                "backend='torch'.")
    return encoder


def _state(encoder) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in encoder.model.state_dict().items()}
    if encoder.runtime.head is not None:
        state.update({f"head.{k}": v for k, v in encoder.runtime.head.state_dict().items()})
    return state


def _check_same(encoders: list, states: list[dict]) -> None:
    first, ref = encoders[0], states[0]
    config = first.config.to_dict()
    for i, (enc, state) in enumerate(zip(encoders[1:], states[1:]), start=1):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        ref_shapes = {k: tuple(v.shape) for k, v in ref.items()}
        diff = sorted(set(shapes) ^ set(ref_shapes)) or [k for k in shapes if shapes[k] != ref_shapes[k]]
        other = {k: v for k, v in enc.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        mine = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}
        if diff or other != mine or len(enc.tokenizer) != len(first.tokenizer) or enc.pooling != first.pooling:
            what = (f"parameter {diff[0]!r}" if diff else "the config" if other != mine
                    else "the tokenizer vocabulary" if len(enc.tokenizer) != len(first.tokenizer) else "the pooling")
            raise ConflictError(f"{_OWNER}: checkpoints must share one architecture, got checkpoint {i} "
                                f"({enc.source!r}) differing from checkpoint 0 ({first.source!r}) in {what}. Soup "
                                "only fine-tunes of one base model.")
        matrices = [k for k, v in ref.items() if v.is_floating_point() and v.ndim >= 2]
        a = torch.cat([(ref[k] - ref[k].mean()).flatten().double() for k in matrices])
        b = torch.cat([(state[k] - state[k].mean()).flatten().double() for k in matrices])
        cosine = float(a @ b / (a.norm() * b.norm()).clamp(min=1e-12))
        if cosine < SAME_BASE_COSINE:
            raise ConflictError(f"{_OWNER}: checkpoints must be fine-tunes of one base, got checkpoint {i} "
                                f"({enc.source!r}) whose weights have cosine {cosine:.3f} with checkpoint 0's (fine-tunes "
                                f"of one base are above {SAME_BASE_COSINE}). Soup only runs started from the same model.")


def _average(template, states: list[dict], members: Sequence[int]):
    soup = copy.deepcopy(template)
    mean = {}
    for key, value in states[members[0]].items():
        if value.is_floating_point():
            mean[key] = torch.stack([states[i][key].double() for i in members]).mean(0).to(value.dtype)
        else:
            mean[key] = value.clone()  # integer buffers (position ids) are the same in every checkpoint
    soup.model.load_state_dict({k[len("model."):]: v for k, v in mean.items() if k.startswith("model.")})
    if soup.runtime.head is not None:
        soup.runtime.head.load_state_dict({k[len("head."):]: v for k, v in mean.items() if k.startswith("head.")})
    soup.source = ""  # not the first checkpoint's folder: save it to name it
    soup.modified()
    return soup


def soup(checkpoints: Sequence, *, method: str = "uniform",
         evaluate: Callable[[object], float] | None = None) -> SoupResult:
    """Average ``checkpoints`` (model folders or torch Encoders of one base) by ``method`` (see the module docstring).

    ``evaluate(encoder) -> float`` (higher is better; a dev-split metric) is required by ``greedy`` and, when given,
    scores the singles and the soup for ``uniform`` too. The soup is a new torch Encoder (the inputs are untouched)
    with the first checkpoint's tokenizer, prompts and settings; save it with ``result.encoder.save(path)``."""
    method = check_choice(method, METHODS, _OWNER, "method")
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise InvalidInputError(f"{_OWNER}: checkpoints must hold at least one model, got none.")
    if method == "greedy" and evaluate is None:
        raise InvalidInputError(f"{_OWNER}: evaluate must be a callable encoder -> float for method='greedy' (it ranks "
                                "the checkpoints on dev data), got None. Pass evaluate= or method='uniform'.")
    encoders = [_load(c) for c in checkpoints]
    states = [_state(e) for e in encoders]
    _check_same(encoders, states)

    def score(encoder) -> float:
        value = evaluate(encoder)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{_OWNER}: evaluate must return a number, got {type(value).__name__}.")
        return float(value)

    scores = None if evaluate is None else [score(e) for e in encoders]
    if method == "uniform":
        members = list(range(len(encoders)))
        result = _average(encoders[0], states, members)
        return SoupResult(result, tuple(members), None if scores is None else tuple(scores),
                          None if evaluate is None else score(result))
    order = sorted(range(len(encoders)), key=lambda i: -scores[i])
    members, best = [order[0]], scores[order[0]]
    result = _average(encoders[0], states, members)
    for i in order[1:]:
        candidate = _average(encoders[0], states, members + [i])
        value = score(candidate)
        if value >= best:
            members, best, result = members + [i], value, candidate
    return SoupResult(result, tuple(members), tuple(scores), best)
