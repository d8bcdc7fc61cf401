"""Cross-encoder losses against hand computation, and fit() training a CrossEncoder end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embedlab.errors import InvalidInputError
from embedlab.models import CrossEncoder
from embedlab.train import Batches, BinaryCrossEntropy, ListwiseSoftmax, PairDataset, fit

BATCH = {"anchor": ["q1", "q2"], "positive": ["p1", "p2"], "negative": [["n11", "n12"], ["n21", "n22"]]}
LOGITS = {("q1", "p1"): 2.0, ("q1", "n11"): 0.5, ("q1", "n12"): -1.0,
          ("q2", "p2"): -0.5, ("q2", "n21"): 1.0, ("q2", "n22"): 0.0}


class FixedScores:
    """A stand-in cross-encoder whose logit for each pair is given."""

    def __init__(self, table):
        self.table, self.seen = table, []

    def scores(self, pairs):
        self.seen.append(list(pairs))
        return torch.tensor([self.table[p] for p in pairs], requires_grad=True)


def value(loss, model, batch) -> float:
    return float(loss(model, batch).detach())


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_binary_cross_entropy_by_hand():
    model = FixedScores(LOGITS)
    got = value(BinaryCrossEntropy(), model, BATCH)
    want = -sum(math.log(_sigmoid(v)) if p[1].startswith("p") else math.log(1 - _sigmoid(v))
                for p, v in LOGITS.items()) / len(LOGITS)
    assert got == pytest.approx(want, rel=1e-6)
    weighted = value(BinaryCrossEntropy(pos_weight=2.0), model, BATCH)
    want2 = -sum(2 * math.log(_sigmoid(v)) if p[1].startswith("p") else math.log(1 - _sigmoid(v))
                 for p, v in LOGITS.items()) / len(LOGITS)
    assert weighted == pytest.approx(want2, rel=1e-6)


def test_binary_cross_entropy_on_scored_pairs():
    table = {("a", "b"): 1.0, ("c", "d"): -2.0}
    got = value(BinaryCrossEntropy(), FixedScores(table), {"sentence1": ["a", "c"], "sentence2": ["b", "d"],
                                                             "score": [0.8, 0.1]})
    want = -((0.8 * math.log(_sigmoid(1)) + 0.2 * math.log(1 - _sigmoid(1)))
             + (0.1 * math.log(_sigmoid(-2)) + 0.9 * math.log(1 - _sigmoid(-2)))) / 2
    assert got == pytest.approx(want, rel=1e-6)
    with pytest.raises(InvalidInputError, match=r"labels in \[0, 1\]"):
        BinaryCrossEntropy()(FixedScores(table), {"sentence1": ["a"], "sentence2": ["b"], "score": [3.0]})


def test_listwise_softmax_by_hand():
    got = value(ListwiseSoftmax(temperature=0.5), FixedScores(LOGITS), BATCH)
    rows = [[2.0, 0.5, -1.0], [-0.5, 1.0, 0.0]]
    want = sum(-r[0] / 0.5 + math.log(sum(math.exp(v / 0.5) for v in r)) for r in rows) / 2
    assert got == pytest.approx(want, rel=1e-6)


def test_loss_errors():
    with pytest.raises(InvalidInputError, match="at least one negative"):
        ListwiseSoftmax()(FixedScores(LOGITS), {"anchor": ["q1"], "positive": ["p1"]})
    with pytest.raises(InvalidInputError, match="trains a CrossEncoder"):
        BinaryCrossEntropy()(object(), BATCH)
    with pytest.raises(InvalidInputError, match="pos_weight"):
        BinaryCrossEntropy(pos_weight=0)


def _data(n: int = 24) -> PairDataset:
    nouns = ["dog", "cat", "house", "tree", "river", "world"]
    colours = ["red", "blue", "green"]
    anchors, positives, negatives = [], [], []
    for i in range(n):
        noun, colour = nouns[i % 6], colours[(i // 6) % 3]
        anchors.append(f"the {colour} {noun}" + " big" * (i // 18))
        positives.append(f"a {colour} {noun} is" + " old" * (i // 18))
        negatives.append([f"a {colours[(i // 6 + 1) % 3]} {nouns[(i + 1) % 6]} sleeps" + " new" * (i // 18)])
    return PairDataset({"anchor": anchors, "positive": positives, "negative": negatives})


def _margin(model, data: PairDataset) -> float:
    """Mean logit of (anchor, positive) minus that of (anchor, negative) over the data."""
    rows = data.batch(range(len(data)))
    pos = model.predict(list(zip(rows["anchor"], rows["positive"])), activation=False)
    neg = model.predict([(a, n[0]) for a, n in zip(rows["anchor"], rows["negative"])], activation=False)
    return float(np.mean(pos - neg))


@pytest.mark.parametrize("loss", [BinaryCrossEntropy(), ListwiseSoftmax()], ids=["bce", "listwise"])
def test_fit_trains_a_cross_encoder(tiny_path, tmp_path, loss):
    data = _data()
    model = CrossEncoder.load(tiny_path, max_length=16)
    before, fingerprint = _margin(model, data), model.fingerprint
    result = fit(model, Batches(data, 4, seed=0), loss, steps=30, lr=1e-2, warmup=0.0, seed=0, out=tmp_path / "run")
    assert result.steps == 30 and all(math.isfinite(v) for v in result.losses)
    after = _margin(model, data)
    assert after > before + 1.0, (before, after)
    assert model.fingerprint != fingerprint
    saved = CrossEncoder.load(tmp_path / "run", max_length=16)
    np.testing.assert_allclose(saved.predict([("the red dog", "a red dog is")]),
                               model.predict([("the red dog", "a red dog is")]), atol=1e-6)
