"""Compatible upgrades: the fitted map, align(), the backward-compatibility term and fit(old_encoder=)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models import Encoder
from embedlab.models.alignment import Alignment
from embedlab.train import Batches, CachedInfoNCE, InfoNCE, PairDataset, fit
from embedlab.train.compat import BackwardCompatible, align, fit_map, min_texts
from embedlab.train.losses import info_nce

from .conftest import WORDS

TEXTS = [" ".join(p) for p in itertools.permutations(WORDS[:10], 3)][:200]


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(400, 16)).astype(np.float32))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    w, b, report = fit_map(x, x @ q.T.astype(np.float32))
    assert report["method"] == "procrustes" or report["heldout_cosine"]["procrustes"] > 0.9999
    mapped = Alignment("s", "m", report["method"], w, b).apply(x)
    assert (mapped * _unit(x @ q.T)).sum(1).min() > 0.999


def test_ridge_wins_for_an_affine_map_between_different_widths():
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(500, 12)).astype(np.float32))
    a, c = rng.normal(size=(20, 12)).astype(np.float32), rng.normal(size=20).astype(np.float32)
    y = x @ a.T + c
    w, b, report = fit_map(x, y)
    assert report["method"] == "ridge" and w.shape == (20, 12) and b.shape == (20,)
    assert report["heldout_cosine"][f"ridge(alpha={report['alpha']:g})"] > report["heldout_cosine"]["procrustes"]
    assert (Alignment("s", "m", "ridge", w, b).apply(x) * _unit(y)).sum(1).mean() > 0.99
    assert "identity_heldout_cosine" not in report  # the widths differ


def test_too_few_texts_names_the_minimum():
    x = np.ones((50, 32), np.float32)
    with pytest.raises(InvalidInputError, match=f"at least {min_texts(32, 16)} .* got 50"):
        fit_map(x, np.ones((50, 16), np.float32))
    with pytest.raises(InvalidInputError, match="one row per text"):
        fit_map(x, np.ones((49, 32), np.float32))
    with pytest.raises(InvalidInputError, match="finite"):
        fit_map(np.full((100, 4), np.nan, np.float32), np.ones((100, 4), np.float32))


def test_alignment_apply_checks_the_width():
    alignment = Alignment("s", "m", "ridge", np.eye(3, 4, dtype=np.float32), None)
    with pytest.raises(InvalidInputError, match=r"shape \(n, 4\), got \(2, 3\)"):
        alignment.apply(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(Alignment("s", "m", "distilled").apply(np.ones((1, 2))), np.ones((1, 2)))


def test_align_fits_on_both_encodings_and_is_saved_with_the_model(tiny_path, guide_path, tmp_path):
    new, old = Encoder.load(tiny_path), Encoder.load(guide_path)
    with pytest.raises(InvalidInputError, match="at least 64"):
        align(new, old, TEXTS[:10])
    align(new, old, TEXTS, cache=tmp_path / "cache")
    alignment = new.alignment
    assert alignment.space == old.space and alignment.weight.shape == (32, 32) and alignment.fit["texts"] == 200
    expect = alignment.apply(new.encode(TEXTS))
    assert (expect * old.encode(TEXTS)).sum(1).mean() >= alignment.fit["identity_heldout_cosine"] - 0.05
    new.save(tmp_path / "new")
    loaded = Encoder.load(tmp_path / "new")
    np.testing.assert_allclose(loaded.alignment.weight, alignment.weight)
    np.testing.assert_allclose(loaded.alignment.apply(loaded.encode(TEXTS)), expect, atol=1e-5)
    assert loaded.space != old.space  # its own vectors are still its own space


def test_a_damaged_alignment_record_is_a_clear_error(tiny_path, tmp_path):
    from embedlab.errors import DataFormatError

    new = Encoder.load(tiny_path)
    new.alignment = Alignment("abc", "old", "ridge", np.eye(8, 32, dtype=np.float32), np.zeros(8, np.float32))
    new.save(tmp_path / "m")
    (tmp_path / "m" / "embedlab_alignment.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DataFormatError, match="must hold an alignment record"):
        Encoder.load(tmp_path / "m")


def _pairs():
    rows = TEXTS[:64]
    return PairDataset({"anchor": rows, "positive": [t[::-1] for t in rows]})


def test_backward_compatible_loss_is_the_loss_plus_the_influence_term(tiny_path, guide_path):
    new, old = Encoder.load(tiny_path), Encoder.load(guide_path)
    new.model.eval()
    batch = _pairs().batch(range(8))
    inner = InfoNCE(temperature=0.1)
    value = float(BackwardCompatible(inner, old, weight=0.5)(new, batch).detach())
    anchors = new.forward(new.tokenize(batch["anchor"]))
    old_docs = torch.from_numpy(old.encode(batch["positive"]))
    expect = float(inner(new, batch).detach()) + 0.5 * float(info_nce(anchors, old_docs, temperature=0.1).detach())
    assert abs(value - expect) < 1e-4


def test_backward_compatible_refuses_other_losses_and_widths(tiny_path, encoder):
    new = Encoder.load(tiny_path)
    with pytest.raises(UnsupportedError, match="InfoNCE-style"):
        BackwardCompatible(CachedInfoNCE(), encoder)
    with pytest.raises(InvalidInputError, match="weight must be a positive"):
        BackwardCompatible(InfoNCE(), encoder, weight=0)
    with pytest.raises(InvalidInputError, match="old model's width must be the new one's, got 384 against 32"):
        BackwardCompatible(InfoNCE(), encoder)(new, _pairs().batch(range(4)))


def test_fit_with_an_old_encoder_records_the_old_space(tiny_path, guide_path, tmp_path):
    new, old = Encoder.load(tiny_path), Encoder.load(guide_path)
    result = fit(new, Batches(_pairs(), 16), InfoNCE(), steps=4, old_encoder=old, compat_weight=2.0,
                 out=tmp_path / "run")
    assert result.steps == 4 and all(np.isfinite(result.losses))
    loaded = Encoder.load(tmp_path / "run")
    assert loaded.alignment.space == old.space and loaded.alignment.method == "compatible"
    assert loaded.alignment.weight is None and loaded.alignment.fit["compat_weight"] == 2.0
    assert loaded.space == new.space  # the in-memory model took the saved folder's space


@given(seed=st.integers(0, 2**16), d_new=st.integers(2, 12), grow=st.integers(0, 6), extra=st.integers(0, 40))
def test_any_isometry_is_recovered(seed, d_new, grow, extra):
    """Property: unit vectors carried into an old space of equal or larger width by an isometry (a rotation, or
    orthonormal columns) are mapped back exactly, whatever the widths: the output is unit rows of the old width
    whose directions match the old vectors."""
    rng = np.random.default_rng(seed)
    d_old = d_new + grow
    n = min_texts(d_new, d_old) + extra
    x = _unit(rng.normal(size=(n, d_new)).astype(np.float32))
    q, _ = np.linalg.qr(rng.normal(size=(d_old, d_new)))  # orthonormal columns [d_old, d_new]
    y = (x @ q.T).astype(np.float32)
    w, b, report = fit_map(x, y, seed=seed)
    mapped = Alignment("s", "m", report["method"], w, b).apply(x)
    assert mapped.shape == (n, d_old) and np.allclose(np.linalg.norm(mapped, axis=1), 1, atol=1e-4)
    assert report["heldout_cosine"]["procrustes"] > 0.999
    assert (mapped * y).sum(1).min() > 0.99


def test_align_with_pairs_adds_query_to_document_rows(tiny_path, guide_path, monkeypatch):
    new, old = Encoder.load(tiny_path), Encoder.load(guide_path)
    queries, documents = TEXTS[150:], TEXTS[:50]  # the documents are among the texts: not encoded again
    calls = []
    real = old.encode
    monkeypatch.setattr(old, "encode", lambda items, **k: calls.append(len(items)) or real(items, **k))
    align(new, old, TEXTS[:150], pairs=(queries, documents))
    assert calls == [150] and new.alignment.fit["pairs"] == 50 and new.alignment.fit["texts"] == 200
    with pytest.raises(InvalidInputError, match="one length, got 50 queries and 49 documents"):
        align(new, old, TEXTS, pairs=(queries, documents[:49]))
