"""Model soups: the uniform mean, greedy selection by a dev metric, and refusing checkpoints that do not mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import ConflictError, InvalidInputError
from embedlab.models import Encoder
from embedlab.train.distill import truncated_student
from embedlab.train.soup import soup


def _finetunes(path, n: int, scale: float = 0.01):
    """``n`` copies of one model with small, different weight changes (stand-ins for fine-tunes of one base)."""
    out = []
    for i in range(n):
        encoder = Encoder.load(path)
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in encoder.model.parameters():
                p.add_(scale * torch.randn(p.shape, generator=generator))
        encoder.modified()
        out.append(encoder)
    return out


def test_uniform_soup_is_the_mean_of_the_weights(tiny_path):
    members = _finetunes(tiny_path, 3)
    result = soup(members, method="uniform")
    name, weight = next((n, p) for n, p in result.encoder.model.named_parameters() if p.ndim == 2)
    expect = torch.stack([dict(m.model.named_parameters())[name].detach() for m in members]).mean(0)
    torch.testing.assert_close(weight.detach(), expect)
    assert result.members == (0, 1, 2) and result.scores is None and result.encoder.source == ""
    assert result.encoder.space not in {m.space for m in members}  # new weights, a new space


def test_a_soup_of_one_is_that_checkpoint(tiny_path):
    (only,) = _finetunes(tiny_path, 1)
    texts = ["the dog runs", "a cat"]
    for method in ("uniform", "greedy"):
        result = soup([only], method=method, evaluate=lambda e: 0.5)
        np.testing.assert_allclose(result.encoder.encode(texts), only.encode(texts), atol=1e-6)
        assert result.members == (0,)


def test_greedy_adds_a_checkpoint_only_when_the_dev_metric_does_not_drop(tiny_path):
    members = _finetunes(tiny_path, 3)
    anchor = members[1].model.embeddings.word_embeddings.weight.detach().clone()

    def dev(encoder) -> float:  # closeness to checkpoint 1: it is the best single, and averaging drifts away
        return -float((encoder.model.embeddings.word_embeddings.weight.detach() - anchor).norm())

    result = soup(members, method="greedy", evaluate=dev)
    assert result.scores[1] == max(result.scores) and result.members == (1,)
    assert result.soup_score == result.scores[1]
    flat = soup(members, method="greedy", evaluate=lambda e: 1.0)  # ties are added
    assert flat.members == (0, 1, 2)


def test_different_architectures_and_bases_are_refused(tiny_path, guide_path):
    base = Encoder.load(tiny_path)
    with pytest.raises(ConflictError, match="share one architecture, got checkpoint 1 .* in parameter"):
        soup([base, truncated_student(base, 1)])
    with pytest.raises(ConflictError, match=r"fine-tunes of one base, got checkpoint 1 .* cosine"):
        soup([tiny_path, guide_path])  # same architecture, independent initialisations


def test_bad_soup_requests(tiny_path):
    with pytest.raises(InvalidInputError, match="at least one model"):
        soup([])
    with pytest.raises(InvalidInputError, match="evaluate must be a callable"):
        soup([tiny_path], method="greedy")
    with pytest.raises(InvalidInputError, match="method"):
        soup([tiny_path], method="average")
    with pytest.raises(InvalidInputError, match="evaluate must return a number"):
        soup([tiny_path], method="greedy", evaluate=lambda e: "good")
