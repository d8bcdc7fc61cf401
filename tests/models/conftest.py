"""Fixtures for the encoder tests: a tiny randomly initialised BERT (exported to ONNX in about a second)."""

from __future__ import annotations

import pytest

from embedlab.models import Encoder

WORDS = ("the a dog cat house big small is runs on and of to hello world red blue green tree river "
         "walks sleeps under over near far old new").split()


def _tiny_bert(path, *, seed: int = 0):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # transformers 5 ignores vocab_file=
    assert tokenizer("the dog")["input_ids"] == [2, 5, 7, 3], "the tiny tokenizer must know its words"
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert():
    """``tiny_bert(path, seed=0)`` writes a 2-layer, 32-d BERT with its tokenizer to ``path`` and returns it."""
    return _tiny_bert


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def tiny_torch(tiny):
    return Encoder.load(tiny)


@pytest.fixture(scope="session")
def tiny_fp32(tiny, tiny_cache):
    return Encoder.load(tiny, backend="onnx", cache_dir=tiny_cache)


@pytest.fixture(scope="session")
def tiny_int8(tiny, tiny_cache):
    return Encoder.load(tiny, backend="onnx", precision="int8", cache_dir=tiny_cache)
