"""Losses that train a :class:`~embedlab.models.CrossEncoder` (a reranker): ``loss(cross_encoder, batch) -> scalar``.

Both read contrastive batches, ``{"anchor": [b], "positive": [b], "negative": [b][k]}`` (``k`` mined hard negatives
per row, :func:`embedlab.train.mine_hard_negatives`), and score every (anchor, candidate) pair with
:meth:`CrossEncoder.scores` (logits with gradients):

- :class:`BinaryCrossEntropy`: pointwise, each pair labelled 1 (positive) or 0 (negative), the monoBERT objective
  (Nogueira & Cho 2019, "Passage Re-ranking with BERT"); a scored batch ``{"sentence1", "sentence2", "score"}``
  with scores in [0, 1] trains on those labels instead.
- :class:`ListwiseSoftmax`: listwise, each row's positive against its own ``k`` negatives, the cross-entropy of a
  softmax over the ``1 + k`` logits (the localized contrastive estimation of Gao, Dai & Callan 2021, "Rethink
  Training of BERT Rerankers in Multi-Stage Retrieval Pipeline", eq. 3).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from embedlab.errors import InvalidInputError
from embedlab.train.losses import _columns, _positive_float, contrastive_texts


def _scores(model, pairs: list[tuple[str, str]], owner: str) -> torch.Tensor:
    if not callable(getattr(model, "scores", None)):
        raise InvalidInputError(f"{owner}: trains a CrossEncoder (embedlab.models.CrossEncoder), got "
                                f"{type(model).__name__}. Load one with CrossEncoder.load(..., backend='torch').")
    return model.scores(pairs)


def _candidate_pairs(batch: Mapping, owner: str) -> tuple[list[tuple[str, str]], int, int]:
    """``(pairs, b, k)``: row ``i``'s pairs at ``i * (1 + k)`` onwards, positive first, then its negatives."""
    anchors, positives, negatives, k = contrastive_texts(batch, owner)
    pairs = []
    for i, (a, p) in enumerate(zip(anchors, positives)):
        pairs.append((a, p))
        pairs.extend((a, n) for n in negatives[i * k : (i + 1) * k])
    return pairs, len(anchors), k


class BinaryCrossEntropy(torch.nn.Module):
    """Pointwise binary cross-entropy on the logits (see the module docstring). ``pos_weight`` scales the positive
    pairs' term (e.g. ``k`` to balance ``k`` negatives per positive; default 1, as sentence-transformers'
    ``BinaryCrossEntropyLoss``)."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = _positive_float(pos_weight, "BinaryCrossEntropy", "pos_weight")

    def forward(self, model, batch: Mapping) -> torch.Tensor:
        if "score" in batch:
            _columns(batch, ("sentence1", "sentence2", "score"), "BinaryCrossEntropy")
            pairs = list(zip(batch["sentence1"], batch["sentence2"]))
            labels = torch.as_tensor([float(s) for s in batch["score"]], dtype=torch.float32)
            if bool(((labels < 0) | (labels > 1)).any()):
                raise InvalidInputError("BinaryCrossEntropy: batch column 'score' must hold labels in [0, 1], got "
                                        f"values from {float(labels.min())} to {float(labels.max())}. Rescale them.")
        else:
            pairs, b, k = _candidate_pairs(batch, "BinaryCrossEntropy")
            labels = torch.tensor(([1.0] + [0.0] * k) * b)
        logits = _scores(model, pairs, "BinaryCrossEntropy")
        labels = labels.to(logits.device)
        weight = torch.as_tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)

    def extra_repr(self) -> str:
        return f"pos_weight={self.pos_weight}"


class ListwiseSoftmax(torch.nn.Module):
    """Listwise softmax cross-entropy over each row's ``[positive, negative_1..k]`` logits divided by
    ``temperature`` (see the module docstring); needs ``k >= 1`` negatives per row."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = _positive_float(temperature, "ListwiseSoftmax", "temperature")

    def forward(self, model, batch: Mapping) -> torch.Tensor:
        pairs, b, k = _candidate_pairs(batch, "ListwiseSoftmax")
        if k < 1:
            raise InvalidInputError("ListwiseSoftmax: batch must have a 'negative' column with at least one negative "
                                    "per row, got none. Mine some with embedlab.train.mine_hard_negatives.")
        logits = _scores(model, pairs, "ListwiseSoftmax").view(b, 1 + k) / self.temperature
        return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=logits.device))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
