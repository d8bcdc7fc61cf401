"""ONNX Runtime backend: parity with torch, int8 quality, the checked cache, token-budget batching, bad input.

Most tests run a tiny randomly initialised BERT saved to a temporary folder (export in about a
second); one test exports the real default model and compares it with sentence-transformers.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models import Encoder
from embedlab.models.runtime import onnx as onnx_backend
from embedlab.models.runtime import onnx_export

TEXTS = ["the dog runs", "a big house is on the small house and the cat sleeps under the old tree",
         "hello", "", "red blue green", "the river runs far"]


def _count_builds(monkeypatch) -> list:
    calls = []
    real = onnx_backend.build

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_backend, "build", counting)
    return calls


# ---------------------------------------------------------------- parity and options
def test_fp32_matches_torch_with_every_option(tiny_torch, tiny_fp32):
    assert tiny_fp32.backend.value == "onnx" and tiny_fp32.precision.value == "fp32"
    for options in [{}, {"normalize": False}, {"dim": 8}, {"prompt": "the "}, {"batch_size": 2}]:
        ours, ref = tiny_fp32.encode(TEXTS, **options), tiny_torch.encode(TEXTS, **options)
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_fp32_token_vectors_match_torch(tiny_torch, tiny_fp32):
    ours, ref = tiny_fp32.encode_tokens(TEXTS, dim=16), tiny_torch.encode_tokens(TEXTS, dim=16)
    assert ours.lengths.tolist() == ref.lengths.tolist()
    np.testing.assert_allclose(ours.vectors, ref.vectors, atol=1e-5)


def test_int8_stays_close_to_float(tiny_torch, tiny_int8):
    ours, ref = tiny_int8.encode(TEXTS), tiny_torch.encode(TEXTS)
    assert ours.dtype == np.float32
    assert (ours * ref).sum(1).min() >= 0.99
    assert tiny_int8.runtime.manifest["kept_fp32"] == []  # every linear layer is int8


def test_keeping_the_ffn_down_projections_in_float32(tiny_fp32, tmp_path):
    kept = onnx_export.quantize_int8(tiny_fp32.runtime.onnx_path, tmp_path / "keep.onnx", keep_ffn_down_fp32=True)
    assert len(kept) == tiny_fp32.num_layers and all("output/dense" in name for name in kept)


def test_fingerprint_tells_backends_and_precisions_apart(tiny_torch, tiny_fp32, tiny_int8):
    prints = {tiny_torch.fingerprint, tiny_fp32.fingerprint, tiny_int8.fingerprint}
    assert len(prints) == 3


def test_layers_forward_and_save_say_they_need_torch(tiny_fp32, tmp_path):
    with pytest.raises(UnsupportedError, match="layers must be None with backend='onnx'.*backend='torch'"):
        tiny_fp32.encode(["the dog"], layers=1)
    with pytest.raises(UnsupportedError, match="layers must be None with backend='onnx'"):
        tiny_fp32.encode_tokens(["the dog"], layers=1)
    with pytest.raises(UnsupportedError, match="backend must be 'torch' for a differentiable forward"):
        tiny_fp32.forward(tiny_fp32.tokenize(["the dog"]))
    with pytest.raises(UnsupportedError, match="backend must be 'torch' to save"):
        tiny_fp32.save(tmp_path / "out")


# ---------------------------------------------------------------- token-budget batching
def test_token_budget_batches_respect_the_budget_and_keep_order(tiny_fp32, monkeypatch):
    texts = TEXTS * 5
    expected = tiny_fp32.encode(texts, batch_size=1)
    shapes = []
    real = tiny_fp32.runtime.embed

    def spy(features, layer=None):
        shapes.append(features["input_ids"].shape)
        return real(features, layer)

    monkeypatch.setattr(tiny_fp32.runtime, "embed", spy)
    out = tiny_fp32.encode(texts, batch_size=None, max_tokens=40)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert all(rows * width <= 40 or rows == 1 for rows, width in shapes)
    assert max(rows for rows, _ in shapes) > 3  # short texts share big batches


def test_token_budget_works_on_the_torch_backend(tiny_torch):
    np.testing.assert_allclose(tiny_torch.encode(TEXTS, batch_size=None, max_tokens=16),
                               tiny_torch.encode(TEXTS, batch_size=1), atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": None, "max_tokens": None}, "batch_size and max_tokens must not both be None"),
    ({"max_tokens": 0}, "max_tokens must be a positive int or None, got 0"),
    ({"batch_size": 0}, "batch_size must be a positive int or None, got 0"),
])
def test_bad_batching_options(tiny_fp32, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        tiny_fp32.encode(["the dog"], **kwargs)


def test_threads_are_applied_and_restored_on_torch(tiny, tiny_cache):
    import torch

    before = torch.get_num_threads()
    enc = Encoder.load(tiny, threads=1)
    enc.encode(["the dog"])
    assert torch.get_num_threads() == before
    onnx_enc = Encoder.load(tiny, backend="onnx", threads=1, cache_dir=tiny_cache)
    assert onnx_enc.runtime.session.get_session_options().intra_op_num_threads == 1


# ---------------------------------------------------------------- the cache
def test_second_load_reuses_the_cache(tiny, tiny_fp32, tiny_cache, monkeypatch):
    calls = _count_builds(monkeypatch)
    again = Encoder.load(tiny, backend="onnx", cache_dir=tiny_cache)
    assert calls == [] and again.runtime.onnx_path == tiny_fp32.runtime.onnx_path


def test_corrupt_cache_is_rebuilt(tiny_bert, tmp_path, monkeypatch):
    model = tiny_bert(tmp_path / "model", seed=1)
    first = Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    expected = first.encode(TEXTS)
    first.runtime.onnx_path.write_bytes(first.runtime.onnx_path.read_bytes()[:1000])  # truncated file
    calls = _count_builds(monkeypatch)
    second = Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    assert len(calls) == 1
    np.testing.assert_allclose(second.encode(TEXTS), expected, atol=1e-6)


def test_cache_from_another_version_is_rebuilt(tiny_bert, tmp_path, monkeypatch):
    model = tiny_bert(tmp_path / "model", seed=2)
    first = Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    manifest_file = first.runtime.onnx_path.parent / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["versions"]["onnxruntime"] = "0.0.1"
    manifest_file.write_text(json.dumps(manifest))
    calls = _count_builds(monkeypatch)
    Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    assert len(calls) == 1
    assert json.loads(manifest_file.read_text())["versions"] == onnx_backend.library_versions()


def test_default_cache_sits_beside_the_model_and_tracks_its_content(tiny_bert, tmp_path, monkeypatch):
    model = tiny_bert(tmp_path / "model", seed=3)
    first = Encoder.load(model, backend="onnx")
    assert first.runtime.onnx_path.is_relative_to(model / onnx_backend.CACHE_DIR_NAME)
    (model / "config.json").write_text((model / "config.json").read_text().replace("\n}", ',\n "x": 1\n}'))
    calls = _count_builds(monkeypatch)
    second = Encoder.load(model, backend="onnx")  # changed content: a new key, a new build
    assert len(calls) == 1 and second.runtime.onnx_path != first.runtime.onnx_path


def test_read_only_model_folder_falls_back_to_the_user_cache(tiny_bert, tmp_path, monkeypatch):
    model = tiny_bert(tmp_path / "model", seed=4)
    (model / onnx_backend.CACHE_DIR_NAME).write_text("not a folder")  # mkdir there fails, even as root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    enc = Encoder.load(model, backend="onnx")
    assert enc.runtime.onnx_path.is_relative_to(tmp_path / "xdg" / "embedlab" / "onnx")


# ---------------------------------------------------------------- bad input
def test_missing_onnxruntime_says_what_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UnsupportedError, match=r"needs the packages 'onnxruntime' and 'onnx', got an environment "
                                               r"without 'onnxruntime'. Fix: pip install 'embedlab\[onnx\]'"):
        Encoder.load(tiny, backend="onnx")


def test_unsupported_architecture_is_refused(tiny_bert, tmp_path):
    from transformers import GPT2Config, GPT2Model

    tok = tiny_bert(tmp_path / "tok")
    path = tmp_path / "gpt2"
    GPT2Model(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32)).save_pretrained(path)
    for f in tok.glob("*"):  # any tokenizer will do: the model type is refused first
        if "token" in f.name or f.name == "vocab.txt":
            (path / f.name).write_bytes(f.read_bytes())
    assert "gpt2" not in onnx_export.EXPORTABLE_MODEL_TYPES
    with pytest.raises(UnsupportedError, match="supports model types .* got 'gpt2'. Use backend='torch'"):
        Encoder.load(path, backend="onnx", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/model.onnx"))


def test_exporter_failure_and_parity_failure_are_refused_not_cached(tiny_bert, tmp_path, monkeypatch):
    import torch

    model = tiny_bert(tmp_path / "model", seed=5)

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::foo")

    with monkeypatch.context() as m:
        m.setattr(torch.onnx, "export", broken)
        with pytest.raises(UnsupportedError, match="could not export the 'bert' model, got RuntimeError"):
            Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    with monkeypatch.context() as m:
        m.setattr(onnx_export, "_PARITY_ATOL", -1.0)
        with pytest.raises(UnsupportedError, match="must match torch within"):
            Encoder.load(model, backend="onnx", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/model.onnx"))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "tensorrt"}, InvalidInputError, r"backend must be one of \['torch', 'onnx'\], got 'tensorrt'"),
    ({"precision": "int4"}, InvalidInputError, r"precision must be one of \['fp32', 'int8'\], got 'int4'"),
    ({"precision": "int8"}, UnsupportedError, "precision must be 'fp32' with backend='torch'"),
    ({"threads": 0}, InvalidInputError, "threads must be a positive int or None, got 0"),
    ({"cache_dir": "/tmp/x"}, InvalidInputError, "cache_dir must be None with backend='torch'"),
])
def test_bad_load_options(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        Encoder.load(tiny, **kwargs)


# ---------------------------------------------------------------- the real model
def test_real_model_matches_sentence_transformers(encoder, reference, data_dir):
    from embedlab.eval import load_sts

    pairs = load_sts(data_dir / "stsbenchmark", "test")[:40]
    texts = [p.sentence1 for p in pairs] + [p.sentence2 for p in pairs]
    fast = Encoder.load(backend="onnx")  # the default cache beside the model: built once, reused by the README
    ours = fast.encode(texts)
    theirs = reference.encode(texts, convert_to_numpy=True)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert ours.shape == (len(texts), 384) and cosine.min() >= 0.99999
    assert fast.fingerprint != encoder.fingerprint


# ---------------------------------------------------------------- the command line
def test_cli_encodes_with_the_onnx_backend(cli, tiny, tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("the dog runs\nhello world\n")
    args = ["encode", src, "-o", tmp_path / "v.npy", "--model", tiny, "--backend", "onnx", "--precision", "int8",
            "--threads", "1", "--max-tokens", "64"]
    out = cli(*args, "--format", "json")
    assert out.exit_code == 0, out.output
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    bad = cli(*args, "--backend", "tensorrt")
    assert bad.exit_code == 2 and "backend must be one of ['torch', 'onnx'], got 'tensorrt'" in bad.stderr
