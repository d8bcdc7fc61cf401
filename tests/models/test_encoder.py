"""Encoder: parity with sentence-transformers, options, persistence and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from embedlab.errors import ConflictError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.eval import load_sts
from embedlab.models import Encoder
from embedlab.models.runtime.torch import TorchRuntime


@pytest.fixture(scope="module")
def sts_sentences(data_dir):
    pairs = load_sts(data_dir / "stsbenchmark", "test")[:150]
    return [p.sentence1 for p in pairs] + [p.sentence2 for p in pairs]


def test_matches_sentence_transformers_on_sts_sentences(encoder, reference, sts_sentences):
    ours = encoder.encode(sts_sentences, batch_size=32)
    theirs = reference.encode(sts_sentences, batch_size=32, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(sts_sentences), 384)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.99999


def test_results_are_in_input_order_whatever_the_batching(encoder, sts_sentences):
    texts = sts_sentences[:40]
    full = encoder.encode(texts, batch_size=7)
    one_by_one = np.vstack([encoder.encode([t]) for t in texts[:5]])
    np.testing.assert_allclose(full[:5], one_by_one, atol=1e-5)
    reversed_ = encoder.encode(texts[::-1], batch_size=64)
    np.testing.assert_allclose(full, reversed_[::-1], atol=1e-5)


def test_empty_list_returns_zero_rows(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32
    assert len(encoder.encode_tokens([])) == 0


def test_empty_string_is_a_defined_unit_vector(encoder):
    out = encoder.encode(["", "hello"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_dim_truncates_and_renormalises(encoder):
    full = encoder.encode(["a small dog", "a big house"], normalize=False)
    short = encoder.encode(["a small dog", "a big house"], dim=64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-5)


def test_layers_pools_an_intermediate_hidden_state(encoder):
    import torch

    text = ["the layer-two representation"]
    out = encoder.encode(text, layers=2, normalize=False)
    features = encoder.tokenize(text)
    with torch.no_grad():
        hidden = encoder.model(**features, output_hidden_states=True).hidden_states[2]
    expected = hidden.mean(dim=1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert not np.allclose(out, encoder.encode(text, normalize=False), atol=1e-3)


@pytest.mark.parametrize("layer", [1, 3])
def test_an_earlier_layer_stops_the_forward_pass_there_and_keeps_gradients(encoder, layer):
    import torch

    blocks = encoder.model.encoder.layer
    ran = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, b in enumerate(blocks)]
    try:
        features = encoder.tokenize(["a pass that ends early", "two texts of different lengths here"])
        pooled = encoder.forward(features, layers=layer)
    finally:
        for h in handles:
            h.remove()
    assert ran == list(range(layer))  # blocks past `layer` never ran
    pooled.sum().backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad is not None
    encoder.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        full = encoder.model(**features, output_hidden_states=True).hidden_states[layer]
        mask = features["attention_mask"].unsqueeze(-1).float()
        expected = (full * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(pooled.detach().numpy(), expected.numpy(), atol=1e-5)


def test_prompt_is_prepended(encoder):
    np.testing.assert_allclose(encoder.encode(["cats"], prompt="query: "), encoder.encode(["query: cats"]), atol=1e-6)


def test_forward_is_differentiable_and_matches_encode(encoder):
    features = encoder.tokenize(["gradients flow"])
    out = encoder.forward(features)
    assert out.requires_grad
    np.testing.assert_allclose(out.detach().numpy(), encoder.encode(["gradients flow"], normalize=False), atol=1e-5)


def test_encode_tokens_drops_special_and_padding_tokens(encoder):
    texts = ["a girl is styling her hair.", "hi"]
    mv = encoder.encode_tokens(texts, batch_size=2)
    expected = [len(encoder.tokenizer.tokenize(t)) for t in texts]
    assert mv.lengths.tolist() == expected
    np.testing.assert_allclose(np.linalg.norm(mv.vectors, axis=1), 1.0, atol=1e-5)
    half = encoder.encode_tokens(texts, dtype=np.float16, dim=32)
    assert half.vectors.dtype == np.float16 and half.dim == 32


def test_overlong_text_is_truncated_with_one_warning(encoder):
    enc = Encoder(TorchRuntime(encoder.model, pooling=encoder.pooling), encoder.tokenizer, max_length=16)
    with pytest.warns(UserWarning, match="longer than max_length=16 tokens"):
        enc.encode(["word " * 100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(["word " * 100])  # once per encoder


def test_progress_callback_can_cancel(encoder):
    from embedlab.errors import CancelledError

    seen = []
    out = encoder.encode(["a", "b", "c"], batch_size=1, progress=lambda d, t: seen.append((d, t)))
    assert out.shape == (3, 384) and seen[-1] == (3, 3)
    with pytest.raises(CancelledError, match="cancelled"):
        encoder.encode(["a", "b", "c"], batch_size=1, progress=lambda d, t: False)


@pytest.mark.parametrize(
    "texts, match",
    [
        ("just one string", "got a single str"),
        (["ok", None], "got NoneType at index 1"),
        (["ok", 3], "got int at index 1"),
        (None, "texts must be a list of str, got NoneType"),
    ],
)
def test_bad_texts_raise_clear_errors(encoder, texts, match):
    with pytest.raises(InvalidInputError, match=match):
        encoder.encode(texts)


@pytest.mark.parametrize("kwargs, match", [
    ({"dim": 0}, r"dim must be an int in \[1, 384\], got 0"),
    ({"dim": 512}, r"dim must be an int in \[1, 384\], got 512"),
    ({"layers": 7}, r"layers must be an int in \[1, 6\], got 7"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
])
def test_bad_options_raise_clear_errors(encoder, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        encoder.encode(["text"], **kwargs)


def test_unknown_pooling_lists_the_valid_ones():
    with pytest.raises(InvalidInputError, match=r"pooling must be one of \['mean', 'cls', 'last_token'\], got 'max'"):
        Encoder.load(pooling="max")


def test_missing_model_folder_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        Encoder.load("some-org/unknown-model")
    with pytest.raises(FileNotFoundError):  # also the built-in
        Encoder.load("some-org/unknown-model")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="neither"):
        Encoder.load(tmp_path)


@pytest.mark.parametrize("backend, message", [("torch", "must hold the transformers weights and a tokenizer, got an"),
                                               ("onnx", "must hold transformers weights, got an error loading them")])
def test_folder_with_a_config_but_no_weights(tmp_path, backend, message):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match=message):
        Encoder.load(tmp_path, backend=backend)


def test_unsupported_sentence_transformers_module(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_LayerNorm", "type": "sentence_transformers.models.LayerNorm"},
    ]))
    with pytest.raises(UnsupportedError, match=r"got 'sentence_transformers.models.LayerNorm' \(LayerNorm\) at index 1"):
        Encoder.load(tmp_path)


def test_save_round_trips_through_both_libraries(encoder, reference, tmp_path):
    from sentence_transformers import SentenceTransformer

    texts = ["saving keeps the embeddings", "identical after reload"]
    path = encoder.save(tmp_path / "model")
    ours = Encoder.load(path).encode(texts)
    theirs = SentenceTransformer(str(path), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, encoder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    with pytest.raises(ConflictError, match="overwrite=True"):
        encoder.save(path)


def test_plain_transformers_folder_uses_mean_pooling(encoder, tmp_path):
    encoder.model.save_pretrained(tmp_path)
    encoder.tokenizer.save_pretrained(tmp_path)
    plain = Encoder.load(tmp_path, pooling="cls")
    assert plain.pooling.value == "cls"
    out = plain.encode(["hello"])
    assert out.shape == (1, 384)


def test_save_over_an_existing_folder_replaces_it_whole(encoder, tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "stale.txt").write_text("from an earlier save")
    encoder.save(path, overwrite=True)
    assert not (path / "stale.txt").exists() and (path / "modules.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left beside it
    np.testing.assert_allclose(Encoder.load(path).encode(["replaced whole"]), encoder.encode(["replaced whole"]),
                               atol=1e-6)
