"""Prebuilt ONNX models: the bundled paraphrase-MiniLM-L3-v2 file and any folder holding a .onnx file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedlab.errors import InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models import Encoder
from embedlab.models.folder import find_prebuilt_onnx

TEXTS = ["A man is playing a guitar.", "The cat sleeps on the warm windowsill.", "hello"]


@pytest.fixture(scope="module")
def l3():
    return Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx")


def test_bundled_l3_loads_with_the_minilm_tokenizer(l3):
    assert (l3.dim, l3.num_layers, l3.max_length, l3.pooling.value) == (384, 3, 128, "mean")
    vectors = l3.encode(TEXTS)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_our_pooling_matches_the_graphs_own_pooled_output(l3):
    """The package's graph also outputs its mean-pooled vector; ours, pooled from its token states, must agree."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(l3.source), providers=["CPUExecutionProvider"])
    pooled = next(o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2)
    features = l3.tokenizer(TEXTS, padding=True, return_tensors="np")
    (reference,) = session.run([pooled], {k: features[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    np.testing.assert_allclose(l3.encode(TEXTS, normalize=False), reference, atol=1e-4)


def test_l3_is_a_real_sentence_model(l3, data_dir):
    from embedlab.eval import evaluate_sts, load_sts

    spearman = evaluate_sts(l3, load_sts(data_dir / "stsbenchmark", "test")[:400])["spearman"]
    assert spearman > 0.75  # paraphrase-MiniLM-L3-v2 is about 0.82 on the full test split


def test_a_file_path_needs_a_tokenizer_when_its_folder_has_none(l3, tmp_path, encoder):
    file = tmp_path / "model.onnx"
    shutil.copy(l3.source, file)
    with pytest.raises(ModelNotFoundError, match="needs a tokenizer"):
        Encoder.load(file, backend="onnx")
    loaded = Encoder.load(tmp_path, backend="onnx", tokenizer=encoder.source, max_length=128)
    np.testing.assert_allclose(loaded.encode(TEXTS), l3.encode(TEXTS), atol=1e-6)
    assert loaded.space == l3.space  # the same file is the same space, wherever it lies
    encoder.tokenizer.save_pretrained(tmp_path)  # a folder with its tokenizer needs no tokenizer=
    assert Encoder.load(tmp_path, backend="onnx", max_length=128).encode(TEXTS[:1]).shape == (1, 384)


def test_bad_prebuilt_requests(l3, tmp_path):
    with pytest.raises(UnsupportedError, match="backend must be 'onnx' for the prebuilt ONNX model"):
        Encoder.load("paraphrase-MiniLM-L3-v2")
    with pytest.raises(UnsupportedError, match="runs as it was built"):
        Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx", precision="int8")
    with pytest.raises(InvalidInputError, match="max_length"):
        Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx", max_length=100_000)
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(l3.source, tmp_path / name)
    with pytest.raises(InvalidInputError, match=r"must hold model.onnx or exactly one .onnx file, got \['a.onnx', 'b.onnx'\]"):
        Encoder.load(tmp_path, backend="onnx")
    with pytest.raises(InvalidInputError, match="tokenizer must be None for a model folder"):
        Encoder.load(tokenizer="all-minilm-l6-v2")


def test_a_graph_without_token_states_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Cast", ["input_ids"], ["out"], to=TensorProto.FLOAT)], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"]),
                               helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "t"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "model.onnx"))
    with pytest.raises(UnsupportedError, match="exactly one float output of rank 3"):
        Encoder.load(tmp_path, backend="onnx", tokenizer="all-minilm-l6-v2")


def test_model_folders_are_not_prebuilt(encoder, tmp_path):
    assert find_prebuilt_onnx(encoder.source) is None and find_prebuilt_onnx(tmp_path) is None
