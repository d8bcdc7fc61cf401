"""The runtimes under one Encoder: the same vectors whichever runs the batch, one padded batch in and float32
arrays out, and errors that name the method the caller called."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models import Encoder
from embedlab.models.batching import token_batches
from embedlab.models.pooling import Pooling, pool
from embedlab.models.runtime import Backend
from embedlab.models.runtime.torch import TorchRuntime

TEXTS = ["the dog runs", "a big house is on the small house and the cat sleeps under the old tree", "hello",
         "", "red blue green", "the river runs far", "old trees near the river"]


def _over(runtime, like: Encoder, max_length: int | None = None) -> Encoder:
    """An Encoder over ``runtime`` with ``like``'s tokenizer and text settings."""
    return Encoder(runtime, like.tokenizer, max_length=max_length or like.max_length,
                   do_lower_case=like.do_lower_case, source=like.source)


@pytest.fixture(scope="module")
def features(tiny_torch):
    _rows, feats = next(token_batches(tiny_torch.tokenizer, TEXTS, max_length=64, batch_size=len(TEXTS),
                                      max_tokens=None, owner="test"))
    return feats


# ---------------------------------------------------------------- one Encoder, either runtime
@pytest.mark.parametrize("options", [{}, {"normalize": False}, {"dim": 8, "prompt": "the "},
                                     {"batch_size": None, "max_tokens": 24}, {"batch_size": 3}])
def test_one_encoder_gives_the_same_vectors_over_either_runtime(tiny_torch, tiny_fp32, options):
    torch_enc, onnx_enc = _over(tiny_torch.runtime, tiny_torch), _over(tiny_fp32.runtime, tiny_torch)
    assert (torch_enc.backend, onnx_enc.backend) == (Backend.TORCH, Backend.ONNX)
    np.testing.assert_allclose(onnx_enc.encode(TEXTS, **options), torch_enc.encode(TEXTS, **options), atol=1e-5)
    ours, ref = onnx_enc.encode_tokens(TEXTS, **options), torch_enc.encode_tokens(TEXTS, **options)
    assert ours.lengths.tolist() == ref.lengths.tolist()
    np.testing.assert_allclose(ours.vectors, ref.vectors, atol=1e-5)


def test_runtimes_agree_on_one_padded_batch(tiny_torch, tiny_fp32, features):
    b, t = features["input_ids"].shape
    for runtime in (tiny_torch.runtime, tiny_fp32.runtime):
        pooled, tokens = runtime.embed(features), runtime.token_states(features)
        assert pooled.dtype == tokens.dtype == np.float32
        assert pooled.shape == (b, 32) and tokens.shape == (b, t, 32)
        expected = pool(torch.from_numpy(tokens), torch.from_numpy(features["attention_mask"]), Pooling.MEAN)
        np.testing.assert_allclose(pooled, expected.numpy(), atol=1e-5)  # the pooled output is pool(token states)
    np.testing.assert_allclose(tiny_fp32.runtime.embed(features), tiny_torch.runtime.embed(features), atol=1e-5)


def test_torch_runtime_layer_is_that_hidden_state(tiny_torch, features):
    runtime = tiny_torch.runtime
    inputs = {k: torch.from_numpy(v) for k, v in features.items()}
    with torch.no_grad():
        expected = runtime.model(**inputs, output_hidden_states=True).hidden_states[1]
    np.testing.assert_allclose(runtime.token_states(features, 1), expected.numpy(), atol=1e-5)


def test_onnx_runtime_refuses_a_layer(tiny_fp32, features):
    with pytest.raises(UnsupportedError, match="OnnxRuntime.embed: layer must be None"):
        tiny_fp32.runtime.embed(features, 1)
    with pytest.raises(UnsupportedError, match="OnnxRuntime.token_states: layer must be None"):
        tiny_fp32.runtime.token_states(features, 1)


def test_a_runtime_sets_the_pooling_and_the_fingerprint(tiny, tiny_torch):
    cls = Encoder.load(tiny, pooling="cls")
    assert cls.pooling is Pooling.CLS and cls.runtime.pooling is Pooling.CLS
    assert cls.fingerprint != tiny_torch.fingerprint
    again = _over(TorchRuntime(tiny_torch.model, pooling=Pooling.MEAN), tiny_torch)
    assert again.fingerprint == tiny_torch.fingerprint


# ---------------------------------------------------------------- errors name the method called
@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, InvalidInputError, r"Encoder.encode_tokens: batch_size must be a positive int or None, got 0"),
    ({"max_tokens": 0}, InvalidInputError, r"Encoder.encode_tokens: max_tokens must be a positive int or None, got 0"),
    ({"batch_size": None, "max_tokens": None}, InvalidInputError,
     "Encoder.encode_tokens: batch_size and max_tokens must not both be None"),
    ({"dim": 33}, InvalidInputError, r"Encoder.encode_tokens: dim must be an int in \[1, 32\], got 33"),
    ({"layers": 3}, InvalidInputError, r"Encoder.encode_tokens: layers must be an int in \[1, 2\], got 3"),
])
def test_encode_tokens_errors_name_encode_tokens(tiny_torch, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny_torch.encode_tokens(["the dog"], **kwargs)


def test_truncation_warning_names_the_method_and_points_at_the_caller(tiny_torch):
    enc = _over(tiny_torch.runtime, tiny_torch, max_length=4)
    with pytest.warns(UserWarning, match="Encoder.encode_tokens: 1 text") as record:
        enc.encode_tokens(["the dog runs on and on"])
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(["the dog runs on and on"])  # once per encoder, whichever method


def test_torch_only_members_say_so_on_onnx(tiny_fp32):
    with pytest.raises(UnsupportedError, match="Encoder.model: backend must be 'torch'"):
        tiny_fp32.model
    with pytest.raises(UnsupportedError, match="Encoder.forward: backend must be 'torch'"):
        tiny_fp32.forward(tiny_fp32.tokenize(["the dog"]), layers=1)
