"""Losses: hand computation on tiny tensors, sentence-transformers' losses on the same model and batch, GradCache's
gradients against the uncached loss (float64), GISTEmbed's mask on a hand-built batch with duplicates."""

from __future__ import annotations

import math

import pytest
import torch

from embedlab.errors import InvalidInputError
from embedlab.models import Encoder
from embedlab.train import Batch, CachedInfoNCE, CoSENT, GISTEmbed, InfoNCE
from embedlab.train.losses import cosent, gist_mask, info_nce, trainable_parameters

ANCHORS = ["the dog runs", "a cat sleeps under the tree", "hello world", "the old house is big", "red blue green"]
POSITIVES = ["a dog walks", "the cat is on the small tree", "hello", "a big old house", "the green tree"]
NEGATIVES = [["the cat"], ["a river"], ["world"], ["small house"], ["blue river far"]]


def _st(path):
    """sentence-transformers over the same tiny BERT folder (Transformer + mean pooling), in eval mode."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    model = SentenceTransformer(modules=[Transformer(str(path)), Pooling(32, pooling_mode="mean")], device="cpu")
    return model.eval()


def _st_features(model, *columns):
    return [model.tokenize(list(c)) for c in columns]


# ---------------------------------------------------------------------------------------------- InfoNCE
def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])  # two positives, one extra negative
    cos = [[1 / math.sqrt(2), 0.0, -1.0], [1 / math.sqrt(2), 1.0, 0.0]]

    def ce(row, target, t):
        logits = [x / t for x in row]
        return -logits[target] + math.log(sum(math.exp(x) for x in logits))

    expected = (ce(cos[0], 0, 0.5) + ce(cos[1], 1, 0.5)) / 2
    assert info_nce(a, c, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)
    back = [[cos[0][0], cos[1][0]], [cos[0][1], cos[1][1]]]  # positives vs anchors
    symmetric = (expected + (ce(back[0], 0, 0.5) + ce(back[1], 1, 0.5)) / 2) / 2
    assert info_nce(a, c, temperature=0.5, symmetric=True).item() == pytest.approx(symmetric, abs=1e-6)


@pytest.mark.parametrize("negatives", [False, True])
def test_info_nce_equals_sentence_transformers_mnrl(tiny_path, tiny_encoder, negatives):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = _st(tiny_path)
    batch = {"anchor": ANCHORS, "positive": POSITIVES}
    columns = [ANCHORS, POSITIVES]
    if negatives:
        batch["negative"] = NEGATIVES
        columns.append([row[0] for row in NEGATIVES])
    ours = InfoNCE()(tiny_encoder, batch)
    theirs = MultipleNegativesRankingLoss(model, scale=20.0)(_st_features(model, *columns), None)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_info_nce_uses_the_batch_prompts(tiny_encoder):
    prompted = Batch({"anchor": ANCHORS, "positive": POSITIVES, "negative": NEGATIVES},
                     {"anchor": "hello ", "positive": "the river "})
    spelled = {"anchor": ["hello " + t for t in ANCHORS], "positive": ["the river " + t for t in POSITIVES],
               "negative": [["the river " + t for t in row] for row in NEGATIVES]}  # negatives take the positive's
    loss = InfoNCE(symmetric=True)
    assert loss(tiny_encoder, prompted).item() == pytest.approx(loss(tiny_encoder, spelled).item(), abs=1e-6)
    assert loss(tiny_encoder, prompted).item() != pytest.approx(loss(tiny_encoder, dict(prompted)).item(), abs=1e-4)


def test_info_nce_trains_the_encoder(tiny_encoder):
    loss = InfoNCE()(tiny_encoder, {"anchor": ANCHORS, "positive": POSITIVES, "negative": NEGATIVES})
    loss.backward()
    grads = {n: p.grad for n, p in tiny_encoder.model.named_parameters() if not n.startswith("pooler.")}
    assert loss.ndim == 0 and all(g is not None for g in grads.values()) and any(g.abs().sum() > 0 for g in grads.values())


# ---------------------------------------------------------------------------------------------- GradCache
def _grads(encoder, loss, batch):
    params = trainable_parameters(encoder)
    for p in params:
        p.grad = None
    value = loss(encoder, batch)
    value.backward()
    return value.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


@pytest.mark.parametrize("symmetric", [False, True])
def test_cached_info_nce_equals_the_uncached_loss_and_gradients_in_float64(tiny_encoder, symmetric):
    tiny_encoder.model.double()
    batch = {"anchor": ANCHORS, "positive": POSITIVES, "negative": NEGATIVES}
    loss, grads = _grads(tiny_encoder, InfoNCE(0.05, symmetric=symmetric), batch)
    cached, cached_grads = _grads(tiny_encoder, CachedInfoNCE(0.05, symmetric=symmetric, mini_batch=2), batch)
    assert loss.dtype == torch.float64
    assert abs(loss.item() - cached.item()) < 1e-6
    assert len(grads) == len(cached_grads) > 10
    for g, h in zip(grads, cached_grads):
        assert torch.allclose(g, h, rtol=0, atol=1e-6), float((g - h).abs().max())


def test_cached_info_nce_replays_dropout(tiny_path):
    encoder = Encoder.load(tiny_path)
    encoder.model.double().train()  # dropout on: the re-run must draw the masks of the first pass
    batch = {"anchor": ANCHORS, "positive": POSITIVES}
    torch.manual_seed(0)
    loss, grads = _grads(encoder, InfoNCE(), batch)
    torch.manual_seed(0)
    cached, cached_grads = _grads(encoder, CachedInfoNCE(mini_batch=len(ANCHORS)), batch)  # the same passes, cached
    assert abs(loss.item() - cached.item()) < 1e-9
    assert all(torch.allclose(g, h, rtol=0, atol=1e-9) for g, h in zip(grads, cached_grads))


def test_cached_info_nce_takes_an_optimizer_step(tiny_encoder):
    params = trainable_parameters(tiny_encoder)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    loss = CachedInfoNCE(mini_batch=3)(tiny_encoder, {"anchor": ANCHORS, "positive": POSITIVES})
    assert loss.requires_grad and loss.ndim == 0
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params))


# ---------------------------------------------------------------------------------------------- GISTEmbed
def test_gist_mask_on_a_hand_built_batch_with_duplicates():
    # guide vectors: row 2 repeats row 0 (the same pair twice); row 1's positive is near anchor 0
    ga = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    gp = torch.tensor([[0.8, 0.6, 0.0], [0.9, 0.0, 0.436], [0.8, 0.6, 0.0]])
    gn = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # row 0's negative = anchor 0 itself
    mask = gist_mask(ga, gp, gn)
    # anchor 0 vs positives: own 0.8 kept; p1 0.9 > 0.8 masked; p2 (a duplicate of p0, 0.8 == 0.8) masked
    assert mask[0, :3].tolist() == [False, True, True]
    assert mask[2, :3].tolist() == [True, True, False]  # the duplicate row masks row 0's positive, keeps its own
    assert mask[1, :3].tolist() == [True, False, True]  # anchor 1's positive is far (0.0): p0 and p2 (0.6) are closer
    assert mask[0, 6:9].tolist() == [True, False, True]  # positives block: self, p1 (0.72 < 0.8), p2 (duplicate)
    assert mask[0, 3:6].tolist() == [True, False, True]  # anchors block: self, a1 (0.0 < 0.8), a2 (duplicate)
    assert mask[0, 9:].tolist() == [True, False, False]  # row 0's hard negative equals its anchor: a false negative
    assert not mask.diagonal().any()  # the positive is never masked


def test_gist_mask_never_masks_the_positive_even_when_everything_beats_it():
    ga, gp = torch.eye(3), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mask = gist_mask(ga, gp, contrast_anchors=False, contrast_positives=False)
    assert mask.shape == (3, 3) and not mask.diagonal().any()
    assert mask[0].tolist() == [False, True, True]  # guide cosines 0 to p1, 0 to p2 tie the positive's 0


def test_gist_mask_margins():
    ga = torch.tensor([[1.0, 0.0]] * 2)
    gp = torch.tensor([[0.8, 0.6], [0.7, math.sqrt(1 - 0.49)]])  # anchor-positive guide cosines 0.8 and 0.7
    keep = dict(contrast_anchors=False, contrast_positives=False)
    assert gist_mask(ga, gp, **keep)[0].tolist() == [False, False]  # 0.7 < 0.8
    assert gist_mask(ga, gp, margin=0.15, **keep)[0].tolist() == [False, True]  # 0.7 > 0.8 - 0.15
    assert gist_mask(ga, gp, margin=0.1, margin_strategy="relative", **keep)[0].tolist() == [False, False]  # 0.72
    assert gist_mask(ga, gp, margin=0.2, margin_strategy="relative", **keep)[0].tolist() == [False, True]  # 0.64
    with pytest.raises(InvalidInputError, match=r"gist_mask: margin_strategy must be one of \['absolute', 'relative'\], got 'hard'"):
        gist_mask(ga, gp, margin_strategy="hard")


def test_gist_embed_masks_duplicate_texts_through_the_guide(tiny_path, guide_path):
    guide = Encoder.load(guide_path)
    model = Encoder.load(tiny_path)
    model.model.eval()
    batch = {"anchor": ["the dog runs", "a cat sleeps", "the dog runs"],
             "positive": ["a dog walks", "the cat", "a dog walks"]}  # rows 0 and 2 are the same pair
    vectors = [torch.from_numpy(guide.encode(batch[c])) for c in ("anchor", "positive")]
    mask = gist_mask(*vectors)
    assert mask[0, 2] and mask[2, 0] and not mask.diagonal().any()
    loss = GISTEmbed(guide)(model, batch)
    loss.backward()
    assert math.isfinite(loss.item()) and model.model.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("negatives", [False, True])
def test_gist_embed_equals_sentence_transformers(tiny_path, guide_path, tiny_encoder, negatives):
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    model, guide = _st(tiny_path), _st(guide_path)
    batch = {"anchor": ANCHORS, "positive": POSITIVES}
    columns = [ANCHORS, POSITIVES]
    if negatives:
        batch["negative"] = NEGATIVES
        columns.append([row[0] for row in NEGATIVES])
    ours = GISTEmbed(Encoder.load(guide_path), margin=0.05)(tiny_encoder, batch)
    theirs = GISTEmbedLoss(model, guide, temperature=0.01, margin=0.05)(_st_features(model, *columns), None)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-4)


def test_gist_embed_guide_may_have_another_tokenizer_and_width(tiny_encoder, encoder):
    loss = GISTEmbed(encoder)  # all-MiniLM-L6-v2 (384-d, its own vocabulary) guiding the 32-d tiny BERT
    value = loss(tiny_encoder, {"anchor": ANCHORS, "positive": POSITIVES, "negative": NEGATIVES})
    value.backward()
    assert value.ndim == 0 and math.isfinite(value.item())


# ---------------------------------------------------------------------------------------------- CoSENT
def test_cosent_by_hand():
    cos, gold = torch.tensor([0.9, 0.1, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.5])
    # pairs with gold_i > gold_j: (0, 1), (0, 2), (2, 1)
    expected = math.log(1 + math.exp(20 * (0.1 - 0.9)) + math.exp(20 * (0.5 - 0.9)) + math.exp(20 * (0.1 - 0.5)))
    assert cosent(cos, gold).item() == pytest.approx(expected, rel=1e-6)
    wrong = cosent(torch.tensor([0.1, 0.9], dtype=torch.float64), torch.tensor([1.0, 0.0]), scale=2.0)  # order reversed
    assert wrong.item() == pytest.approx(math.log(1 + math.exp(2 * 0.8)), rel=1e-6)
    assert cosent(cos, torch.ones(3)).item() == 0.0


def test_cosent_equals_sentence_transformers(tiny_path, tiny_encoder):
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    model = _st(tiny_path)
    scores = [0.9, 0.1, 0.5, 0.5, 0.0]
    ours = CoSENT()(tiny_encoder, {"sentence1": ANCHORS, "sentence2": POSITIVES, "score": scores})
    theirs = CoSENTLoss(model, scale=20.0)(_st_features(model, ANCHORS, POSITIVES), torch.tensor(scores))
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_settings_and_batches_are_clear_errors(tiny_encoder):
    with pytest.raises(InvalidInputError, match=r"InfoNCE: temperature must be a positive finite number, got 0"):
        InfoNCE(0)
    with pytest.raises(InvalidInputError, match=r"CachedInfoNCE: mini_batch must be a positive int, got 0"):
        CachedInfoNCE(mini_batch=0)
    with pytest.raises(InvalidInputError, match=r"GISTEmbed: guide must be an Encoder, got str"):
        GISTEmbed("all-MiniLM-L6-v2")
    with pytest.raises(InvalidInputError, match=r"GISTEmbed: margin_strategy must be one of"):
        GISTEmbed(tiny_encoder, margin_strategy="hard")
    with pytest.raises(InvalidInputError, match=r"GISTEmbed.forward: guide must be another encoder than the one trained"):
        GISTEmbed(tiny_encoder)(tiny_encoder, {"anchor": ["a"], "positive": ["b"]})
    with pytest.raises(InvalidInputError, match=r"InfoNCE.forward: batch must have columns \['anchor', 'positive'\], got \['score', 'sentence1', 'sentence2'\]"):
        InfoNCE()(tiny_encoder, {"sentence1": ["a"], "sentence2": ["b"], "score": [1.0]})
    with pytest.raises(InvalidInputError, match=r"CoSENT.forward: batch must have columns \['sentence1', 'sentence2', 'score'\]"):
        CoSENT()(tiny_encoder, {"anchor": ["a"], "positive": ["b"]})
    with pytest.raises(InvalidInputError, match=r"batch column 'negative' must have the same count per row"):
        InfoNCE()(tiny_encoder, {"anchor": ["a", "b"], "positive": ["c", "d"], "negative": [["x"], ["y", "z"]]})
