"""Late-interaction training: MaxSim scores against the retrieval kernel, the trainable token projection, and a
trained folder whose encode_tokens yields the trained vectors (torch and ONNX) while sentence-transformers still loads it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedlab.errors import ConflictError, DataFormatError, InvalidInputError
from embedlab.index.multivector.maxsim import maxsim_search
from embedlab.models import Encoder
from embedlab.train import Batch, Batches, MaxSimContrastive, PairDataset, fit
from embedlab.train.losses import maxsim_scores
from embedlab.types import MultiVectors

ANCHORS = ["the dog runs", "a cat sleeps under the tree", "hello world", "the old house is big", "red blue green"]
POSITIVES = ["a dog walks", "the cat is on the small tree", "hello", "a big old house", "the green tree"]


def test_maxsim_scores_rank_as_the_retrieval_kernel_scores():
    rng = np.random.default_rng(0)
    q_len, d_len = [3, 1, 4], [2, 5, 1, 3]
    q = [F.normalize(torch.randn(n, 8, dtype=torch.float64), dim=1) for n in q_len]
    d = [F.normalize(torch.randn(n, 8, dtype=torch.float64), dim=1) for n in d_len]
    pad = lambda xs, t: torch.stack([torch.cat([x, torch.full((t - len(x), 8), 7.0, dtype=x.dtype)]) for x in xs])
    mask = lambda ns, t: torch.tensor([[i < n for i in range(t)] for n in ns])
    ours = maxsim_scores(pad(q, 4), mask(q_len, 4), pad(d, 5), mask(d_len, 5)).numpy()
    queries = MultiVectors.from_list([x.numpy().astype(np.float32) for x in q])
    docs = MultiVectors.from_list([x.numpy().astype(np.float32) for x in d])
    scores, ids = maxsim_search(queries, docs, len(d_len))
    for i, n in enumerate(q_len):  # the kernel sums over query tokens; ours is that sum / the token count
        np.testing.assert_allclose(ours[i, ids[i]] * n, scores[i], atol=1e-5)
    assert rng is not None


def test_loss_adds_a_projection_and_trains_it_with_the_backbone(tiny_encoder):
    loss = MaxSimContrastive(tiny_encoder, dim=8)
    assert tiny_encoder.token_dim == 8 and tiny_encoder.token_projection.out_features == 8
    w = tiny_encoder.token_projection.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)  # orthonormal rows at the start
    value = loss(tiny_encoder, Batch({"anchor": ANCHORS, "positive": POSITIVES}))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert tiny_encoder.token_projection.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_encoder.model.parameters())


def test_loss_equals_info_nce_over_maxsim_by_hand(tiny_encoder):
    loss = MaxSimContrastive(tiny_encoder, dim=8, temperature=0.1)
    batch = Batch({"anchor": ANCHORS[:3], "positive": POSITIVES[:3], "negative": [["x y"], ["z"], ["w v u"]]})
    with torch.no_grad():
        value = float(loss(tiny_encoder, batch))
        q = tiny_encoder.encode_tokens(ANCHORS[:3])
        d = tiny_encoder.encode_tokens(POSITIVES[:3] + ["x y", "z", "w v u"])
    scores, ids = maxsim_search(q, d, 6)
    full = np.zeros((3, 6))
    for i in range(3):
        full[i, ids[i]] = scores[i] / (q.offsets[i + 1] - q.offsets[i])
    logits = torch.tensor(full) / 0.1
    expected = float(F.cross_entropy(logits, torch.arange(3)))
    assert value == pytest.approx(expected, abs=1e-4)


def test_a_trained_folder_yields_the_trained_token_vectors(tiny_path, tmp_path):
    encoder = Encoder.load(tiny_path)
    data = PairDataset({"anchor": ANCHORS, "positive": POSITIVES})
    fit(encoder, Batches(data, 4, seed=0), MaxSimContrastive(encoder, dim=8), steps=2, lr=1e-3, out=tmp_path / "run")
    before = encoder.encode_tokens(POSITIVES)
    loaded = Encoder.load(tmp_path / "run")
    assert loaded.token_dim == 8 and loaded.dim == encoder.dim
    after = loaded.encode_tokens(POSITIVES)
    assert after.vectors.shape[1] == 8
    np.testing.assert_allclose(after.vectors, before.vectors, atol=1e-5)
    np.testing.assert_array_equal(after.offsets, before.offsets)
    assert loaded.fingerprint != Encoder.load(tiny_path).fingerprint
    onnx = Encoder.load(tmp_path / "run", backend="onnx", cache_dir=tmp_path / "onnx")
    np.testing.assert_allclose(onnx.encode_tokens(POSITIVES).vectors, after.vectors, atol=1e-4)

    from sentence_transformers import SentenceTransformer  # the single-vector model is still a plain ST folder

    st = SentenceTransformer(str(tmp_path / "run"), device="cpu")
    np.testing.assert_allclose(st.encode(POSITIVES, normalize_embeddings=True), loaded.encode(POSITIVES), atol=1e-5)


def test_projection_width_conflicts_and_bad_folders_are_clear_errors(tiny_path, tmp_path):
    encoder = Encoder.load(tiny_path)
    encoder.add_token_projection(8)
    assert encoder.add_token_projection(8) is encoder.token_projection
    with pytest.raises(ConflictError, match="dim must match"):
        encoder.add_token_projection(4)
    with pytest.raises(InvalidInputError, match="dim must be"):
        Encoder.load(tiny_path).add_token_projection(33)  # wider than the 32-d backbone
    with pytest.raises(InvalidInputError, match="encoder must be an Encoder"):
        MaxSimContrastive(object())
    loss = MaxSimContrastive(Encoder.load(tiny_path), dim=8)
    with pytest.raises(InvalidInputError, match="token projection"):
        loss(Encoder.load(tiny_path), Batch({"anchor": ANCHORS, "positive": POSITIVES}))

    folder = encoder.save(tmp_path / "m")
    config = folder / "token_projection" / "config.json"
    config.write_text(json.dumps({"in_features": 16, "out_features": 8, "bias": False}))
    with pytest.raises(DataFormatError, match="must be \\[out_features, 32\\]"):
        Encoder.load(folder)
    config.write_text("{not json")
    with pytest.raises(DataFormatError, match="config.json"):
        Encoder.load(folder)
