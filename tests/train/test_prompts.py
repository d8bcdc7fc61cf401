"""Prompts trained with are saved with the model and applied by name at inference, in embedlab and in
sentence-transformers; folders with bad prompt configs are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.models import Encoder
from embedlab.train import Batches, InfoNCE, PairDataset, fit

ANCHORS = ["the dog runs", "a cat sleeps under the tree", "hello world", "the old house is big", "red blue green"]
POSITIVES = ["a dog walks", "the cat is on the small tree", "hello", "a big old house", "the green tree"]
PROMPTS = {"anchor": "query: ", "positive": "passage: "}


@pytest.fixture(scope="module")
def trained(tiny_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("prompts") / "run"
    encoder = Encoder.load(tiny_path)
    batches = Batches(PairDataset({"anchor": ANCHORS, "positive": POSITIVES}), 4, prompts=PROMPTS)
    fit(encoder, batches, InfoNCE(), steps=2, lr=1e-3, out=out)
    return encoder, out


def test_training_prompts_are_saved_and_applied_by_name(trained):
    encoder, out = trained
    assert encoder.prompts == {"query": "query: ", "document": "passage: "}
    loaded = Encoder.load(out)
    assert loaded.prompts == encoder.prompts and loaded.default_prompt_name is None
    np.testing.assert_allclose(loaded.encode(ANCHORS, prompt_name="query"), loaded.encode(ANCHORS, prompt="query: "))
    assert not np.allclose(loaded.encode(ANCHORS, prompt_name="query"), loaded.encode(ANCHORS), atol=1e-4)
    tokens = loaded.encode_tokens(POSITIVES, prompt_name="document")
    assert tokens.offsets[-1] == loaded.encode_tokens(POSITIVES, prompt="passage: ").offsets[-1]


def test_sentence_transformers_reads_the_saved_prompts(trained):
    from sentence_transformers import SentenceTransformer

    _, out = trained
    st = SentenceTransformer(str(out), device="cpu")
    assert st.prompts == {"query": "query: ", "document": "passage: "}
    ours = Encoder.load(out).encode(ANCHORS, prompt_name="query")
    np.testing.assert_allclose(st.encode(ANCHORS, prompt_name="query", normalize_embeddings=True), ours, atol=1e-5)


def test_a_default_prompt_applies_when_a_call_names_none(trained, tmp_path):
    _, out = trained
    encoder = Encoder.load(out)
    plain_fingerprint = encoder.fingerprint
    encoder.default_prompt_name = "query"
    encoder._fingerprint = None
    assert encoder.fingerprint != plain_fingerprint  # caches keyed by it must not serve the prompt-less vectors
    folder = encoder.save(tmp_path / "m")
    loaded = Encoder.load(folder)
    assert loaded.default_prompt_name == "query"
    np.testing.assert_allclose(loaded.encode(ANCHORS), loaded.encode(ANCHORS, prompt="query: "))
    np.testing.assert_allclose(loaded.encode(ANCHORS, prompt=""), Encoder.load(out).encode(ANCHORS), atol=1e-6)


def test_prompt_names_are_checked(trained):
    encoder, _ = trained
    with pytest.raises(InvalidInputError, match=r"prompt_name must be one of the model's prompts \['document', 'query'\]"):
        encoder.encode(ANCHORS, prompt_name="passage")
    with pytest.raises(InvalidInputError, match="not both"):
        encoder.encode(ANCHORS, prompt="x", prompt_name="query")


def test_conflicting_prompts_keep_every_text_under_its_own_name(tiny_path):
    a = PairDataset({"anchor": ANCHORS, "positive": POSITIVES, "negative": [[t] for t in reversed(POSITIVES)]},
                    prompts={"anchor": "q: ", "positive": "p: ", "negative": "n: "})
    b = PairDataset({"anchor": POSITIVES, "positive": ANCHORS}, prompts={"anchor": "other: "})
    names = Batches({"a": a, "b": b}, 2).model_prompts()
    assert names == {"query": "q: ", "document": "p: ", "negative": "n: ", "anchor": "other: "}


@pytest.mark.parametrize("config, match", [
    ({"prompts": {"query": 3}}, "prompts as"),
    ({"prompts": {"query": "q: "}, "default_prompt_name": "document"}, "default_prompt_name"),
    ({"prompts": ["q: "]}, "prompts as"),
])
def test_bad_prompt_configs_are_clear_errors(trained, tmp_path, config, match):
    folder = Encoder.load(trained[1]).save(tmp_path / "m")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match=match):
        Encoder.load(folder)
