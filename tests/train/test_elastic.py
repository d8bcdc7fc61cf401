"""Elastic losses (Matryoshka, Starbucks, 2DMSE) and the one-pass per-layer encoder paths they train and evaluate on:
hand computation from the encoder's own per-layer embeddings, sentence-transformers' MatryoshkaLoss on the same model
and batch, the alignment term's KL, and every bad setting as a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models import Encoder
from embedlab.train import Batches, CoSENT, InfoNCE, Matryoshka, PairDataset, Starbucks, TwoDMatryoshka, fit
from embedlab.train.losses import CachedInfoNCE, info_nce, similarity_kl

ANCHORS = ["the dog runs", "a cat sleeps under the tree", "hello world", "the old house is big", "red blue green"]
POSITIVES = ["a dog walks", "the cat is on the small tree", "hello", "a big old house", "the green tree"]
BATCH = {"anchor": ANCHORS, "positive": POSITIVES}
PAIRS = [(1, 8), (1, 16), (2, 32)]  # the tiny BERT: 2 layers, 32 dims


def _parts(encoder, layer):
    return [encoder.forward(encoder.tokenize(t), layers=layer) for t in (ANCHORS, POSITIVES)]


# ---------------------------------------------------------------------------------------------- one pass, many layers
def test_forward_layers_equals_one_forward_per_layer(tiny_encoder):
    features = tiny_encoder.tokenize(ANCHORS)
    both = tiny_encoder.forward_layers(features, [2, 1])
    assert list(both) == [2, 1]
    for layer in (1, 2):
        torch.testing.assert_close(both[layer], tiny_encoder.forward(features, layers=layer))


def test_encode_layers_equals_encode_per_layer(tiny_encoder):
    out = tiny_encoder.encode_layers(ANCHORS + POSITIVES, [1, 2, 1], dim=16)
    assert sorted(out) == [1, 2]
    for layer, vectors in out.items():
        np.testing.assert_allclose(vectors, tiny_encoder.encode(ANCHORS + POSITIVES, layers=layer, dim=16), atol=1e-6)
        assert vectors.shape == (10, 16)
    assert not np.allclose(out[1], out[2])


def test_encode_layers_bad_input(tiny_encoder, tiny_path):
    for bad in ([], 3, [0], [1, 3], "12"):
        with pytest.raises(InvalidInputError, match="layers"):
            tiny_encoder.encode_layers(ANCHORS, bad)
    with pytest.raises(UnsupportedError, match="backend='torch'"):
        Encoder.load(tiny_path, backend="onnx").encode_layers(ANCHORS, [1])


# ---------------------------------------------------------------------------------------------- Matryoshka
def test_matryoshka_is_the_weighted_sum_over_prefixes(tiny_encoder):
    a, p = _parts(tiny_encoder, None)
    expected = sum(w * info_nce(a[:, :d], p[:, :d]) for d, w in ((8, 1.0), (16, 0.5), (32, 2.0)))
    loss = Matryoshka(InfoNCE(), [32, 8, 16], weights=[2.0, 1.0, 0.5])  # any order; weights follow their dims
    assert loss.dims == [8, 16, 32] and loss.weights == [1.0, 0.5, 2.0]
    assert loss(tiny_encoder, BATCH).item() == pytest.approx(expected.item(), rel=1e-5)


def test_matryoshka_equals_sentence_transformers(tiny_path, tiny_encoder):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    model = SentenceTransformer(modules=[Transformer(str(tiny_path)), Pooling(32, pooling_mode="mean")],
                                device="cpu").eval()
    theirs = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), [32, 16, 8])
    features = [model.tokenize(ANCHORS), model.tokenize(POSITIVES)]
    ours = Matryoshka(InfoNCE(), [8, 16, 32])(tiny_encoder, BATCH)
    assert ours.item() == pytest.approx(theirs(features, None).item(), rel=1e-4)


def test_matryoshka_wraps_cosent(tiny_encoder):
    batch = {"sentence1": ANCHORS, "sentence2": POSITIVES, "score": [5.0, 4.0, 3.0, 1.0, 0.0]}
    u, v = _parts(tiny_encoder, None)
    expected = sum(CoSENT().from_embeddings([u[:, :d], v[:, :d]], batch) for d in (8, 32))
    assert Matryoshka(CoSENT(), [8, 32])(tiny_encoder, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_matryoshka_bad_settings(tiny_encoder):
    for dims, match in (([], "non-empty"), ([8, 8], "repeat"), ([0, 8], "positive"), ("8", "list"),
                        ([8.0], "ints")):
        with pytest.raises(InvalidInputError, match=match):
            Matryoshka(InfoNCE(), dims)
    with pytest.raises(InvalidInputError, match="weights must be a list of 2"):
        Matryoshka(InfoNCE(), [8, 16], weights=[1.0])
    with pytest.raises(InvalidInputError, match="at most the model's width 32"):
        Matryoshka(InfoNCE(), [16, 64])(tiny_encoder, BATCH)
    for inner in (CachedInfoNCE(), Matryoshka(InfoNCE(), [8]), torch.nn.Linear(2, 2)):
        with pytest.raises(InvalidInputError, match="InfoNCE or CoSENT"):
            Matryoshka(inner, [8])


# ---------------------------------------------------------------------------------------------- 2-D: Starbucks, 2DMSE
def test_similarity_kl_is_zero_for_the_same_scores_and_positive_otherwise(tiny_encoder):
    full = _parts(tiny_encoder, 2)
    assert similarity_kl(full, full).item() == pytest.approx(0.0, abs=1e-6)
    small = _parts(tiny_encoder, 1)
    kl = similarity_kl([p[:, :8] for p in small], full)
    assert kl.item() > 0
    kl.backward()  # the full model is a detached target: the last block (which only the full model uses) gets no gradient
    last = [p for n, p in tiny_encoder.model.named_parameters() if n.startswith("encoder.layer.1.")]
    first = [p for n, p in tiny_encoder.model.named_parameters() if n.startswith("encoder.layer.0.")]
    assert last and all(p.grad is None or not torch.any(p.grad) for p in last)
    assert any(p.grad is not None and torch.any(p.grad) for p in first)


def test_similarity_kl_by_hand():
    a, c = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 1.0]])
    p = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)  # full: cosines 1, 0
    q = torch.softmax(torch.tensor([2 ** -0.5, 2 ** -0.5]) / 0.5, 0)  # small: cosines 0.707, 0.707
    expected = float((p * (p / q).log()).sum())
    assert similarity_kl([a2, c], [a, c], temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_starbucks_is_every_pair_plus_the_kl_toward_the_full_model(tiny_encoder):
    loss = Starbucks(InfoNCE(), PAIRS, kl_weight=0.5)
    parts = {layer: _parts(tiny_encoder, layer) for layer in (1, 2)}
    expected = 0.0
    for layer, d in PAIRS:
        small = [p[:, :d] for p in parts[layer]]
        expected += info_nce(*small)
        if (layer, d) != (2, 32):
            expected += 0.5 * similarity_kl(small, parts[2])
    assert loss(tiny_encoder, BATCH).item() == pytest.approx(expected.item(), rel=1e-5)
    no_kl = Starbucks(InfoNCE(), PAIRS, kl_weight=0)(tiny_encoder, BATCH)
    assert no_kl.item() == pytest.approx(sum(info_nce(*[p[:, :d] for p in parts[layer]]).item()
                                             for layer, d in PAIRS), rel=1e-5)


def test_two_d_matryoshka_draws_one_earlier_layer_and_trains_the_last(tiny_path):
    encoder = Encoder.load(tiny_path)
    encoder.model.eval()
    pairs = [(1, 8), (2, 16), (2, 32)]
    loss = TwoDMatryoshka(InfoNCE(), pairs, kl_weight=0.25)
    torch.manual_seed(0)
    got = loss(encoder, BATCH).item()
    last, drawn = _parts(encoder, 2), _parts(encoder, 1)  # two layers: layer 1 is the only one to draw
    expected = sum(info_nce(*[p[:, :d] for p in last]) + info_nce(*[p[:, :d] for p in drawn]) for d in (8, 16, 32))
    expected = expected + 0.25 * similarity_kl(drawn, last)
    assert got == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("cls", [Starbucks, TwoDMatryoshka])
def test_pairs_are_checked(cls, tiny_encoder):
    cases = [([], "non-empty"), ([(1, 8), (1, 8), (2, 32)], "repeat"), ([(2, 32), (1, 8)], "small to full"),
             ([(1, 16), (2, 8), (2, 32)], "small to full"), ([(1, 8, 3)], "pairs"), ([(0, 8), (2, 32)], "positive")]
    for pairs, match in cases:
        with pytest.raises(InvalidInputError, match=match):
            cls(InfoNCE(), pairs)
    with pytest.raises(InvalidInputError, match=r"within the model \(2 layers, dim 32\)"):
        cls(InfoNCE(), [(1, 8), (3, 32)])(tiny_encoder, BATCH)
    with pytest.raises(InvalidInputError, match=r"last pair must be the full model \(2, 32\)"):
        cls(InfoNCE(), [(1, 8), (2, 16)])(tiny_encoder, BATCH)


def test_two_d_matryoshka_needs_two_layers():
    with pytest.raises(InvalidInputError, match="at least two layers"):
        TwoDMatryoshka(InfoNCE(), [(2, 8), (2, 32)])


@pytest.mark.parametrize("make", [lambda: Starbucks(InfoNCE(), PAIRS), lambda: TwoDMatryoshka(InfoNCE(), PAIRS),
                                  lambda: Matryoshka(InfoNCE(), [8, 16, 32])])
def test_elastic_losses_train_and_lower_the_small_sizes_loss(tiny_path, make):
    words = ["red", "green", "blue", "house", "tree", "river", "dog", "cat", "stone", "cloud", "bird", "fish"]
    encoder = Encoder.load(tiny_path)
    data = PairDataset({"anchor": [f"the {w}" for w in words], "positive": [f"a {w} here" for w in words]})
    batch = data.batch(range(len(data)))
    probe = Starbucks(InfoNCE(), PAIRS, kl_weight=0)
    encoder.model.eval()
    before = probe(encoder, batch).item()
    result = fit(encoder, Batches(data, 6, seed=0), make(), steps=30, lr=1e-3, seed=0)
    encoder.model.eval()
    assert all(np.isfinite(result.losses))
    assert probe(encoder, batch).item() < before
