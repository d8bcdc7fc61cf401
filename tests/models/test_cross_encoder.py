"""CrossEncoder: scores equal to sentence-transformers' on the same folder (both directions of save / load), the ONNX
runtime against torch, reranking inside a collection, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import ConflictError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models import CrossEncoder, Encoder

PAIRS = [("a cat", "a small domesticated feline"), ("a cat", "the stock market fell"),
         ("river bank", "the land beside a river"), ("x", ""), ("what is " * 60, "long " * 300)]


@pytest.fixture(scope="module")
def default_ce(cross_encoder):
    return cross_encoder


@pytest.fixture(scope="module")
def tiny_ce(tiny):
    return CrossEncoder.load(tiny, max_length=32)


def test_saved_folder_scores_the_same_in_sentence_transformers(default_ce, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    folder = default_ce.save(tmp_path / "ce")
    st = STCrossEncoder(str(folder), device="cpu")
    assert st.max_length == 128
    np.testing.assert_allclose(default_ce.predict(PAIRS), st.predict(PAIRS), atol=1e-5)
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"


def test_loads_a_folder_sentence_transformers_wrote(default_ce, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    st = STCrossEncoder(default_ce.source, num_labels=1, max_length=64, device="cpu")
    st.save(str(tmp_path / "st"))
    ours = CrossEncoder.load(tmp_path / "st")
    assert ours.max_length == 64
    np.testing.assert_allclose(ours.predict(PAIRS), st.predict(PAIRS), atol=1e-5)
    logits = ours.predict(PAIRS, activation=False)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), ours.predict(PAIRS), atol=1e-6)


def test_new_head_is_seeded(tiny):
    a, b, c = (CrossEncoder.load(tiny, seed=s) for s in (0, 0, 1))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.predict(PAIRS[:3]), b.predict(PAIRS[:3]))


def test_onnx_matches_torch_and_reuses_its_build(tiny_ce, tmp_path):
    folder = tiny_ce.save(tmp_path / "ce")
    onnx = CrossEncoder.load(folder, backend="onnx", threads=1)
    assert onnx.fingerprint != tiny_ce.fingerprint  # the backend is part of the cache key
    np.testing.assert_allclose(onnx.predict(PAIRS), tiny_ce.predict(PAIRS), atol=1e-5)
    builds = list((folder / ".embedlab-onnx").glob("ce-*/manifest.json"))
    assert len(builds) == 1
    stamp = builds[0].stat().st_mtime_ns
    CrossEncoder.load(folder, backend="onnx", threads=1)
    assert builds[0].stat().st_mtime_ns == stamp
    with pytest.raises(UnsupportedError, match="backend='torch'"):
        onnx.save(tmp_path / "again")


def test_batches_do_not_change_scores(tiny_ce):
    one = np.concatenate([tiny_ce.predict([p]) for p in PAIRS])
    np.testing.assert_allclose(tiny_ce.predict(PAIRS, batch_size=2), one, atol=1e-5)
    assert tiny_ce.predict([]).shape == (0,)


def test_unreadable_share(tiny_ce):
    assert tiny_ce.unreadable(["the dog runs"]) == 0.0
    assert tiny_ce.unreadable(["zebra quantum"]) == 1.0  # words the tiny vocabulary lacks


def test_reranks_a_collection(default_ce, tmp_path, rng):
    from embedlab.index import Collection

    texts = ["a small domesticated feline", "the stock market fell", "a large wild cat", "bread and butter"]
    with Collection.create(tmp_path / "col", dim=8, text_index=True) as col:
        col.add([f"d{i}" for i in range(4)], rng.standard_normal((4, 8)).astype(np.float32), texts=texts)
        hits = col.search(rng.standard_normal((1, 8)).astype(np.float32), 4, query_texts=["a cat"],
                          rerank=default_ce, rerank_candidates=4)
    want = np.argsort(-default_ce.predict([("a cat", t) for t in texts]), kind="stable")
    assert list(hits.ids[0]) == [f"d{i}" for i in want]
    assert "rerank(CrossEncoder)" in hits.strategy[0]


def test_errors(tiny_ce, tiny, tmp_path):
    with pytest.raises(InvalidInputError, match=r"pairs\[1\] must be a \(query, document\) pair"):
        tiny_ce.predict([("a", "b"), ("only one",)])
    with pytest.raises(InvalidInputError, match="list of"):
        tiny_ce.predict("a string")
    with pytest.raises(ModelNotFoundError, match="CrossEncoder.load"):
        CrossEncoder.load(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="max_length"):
        CrossEncoder.load(tiny, max_length=10_000)
    with pytest.raises(InvalidInputError, match="cache_dir must be None"):
        CrossEncoder.load(tiny, cache_dir=tmp_path)
    with pytest.raises(ConflictError, match="new or empty folder"):
        tiny_ce.save(tiny)
    two = tiny_ce.save(tmp_path / "two")
    config = json.loads((two / "config.json").read_text())
    config.update(id2label={"0": "a", "1": "b"}, label2id={"a": 0, "b": 1})
    (two / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedError, match="one output label"):
        CrossEncoder.load(two)
    with pytest.raises(UnsupportedError, match="embedlab.models.CrossEncoder"):
        Encoder.load(tiny_ce.save(tmp_path / "three"))
