"""LEAF distillation: truncated students, the loss, teacher-target caching and the alignment record."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models import Encoder
from embedlab.train.distill import Distillation, distill, onnx_student, teacher_targets, truncated_student, widen

from .conftest import WORDS

TEXTS = [" ".join(p) for p in itertools.islice(itertools.permutations(WORDS[:12], 3), 0, 1056, 11)]  # 96, distinct


def test_truncated_student_keeps_the_first_blocks_and_leaves_the_teacher_alone(tiny_encoder):
    student = truncated_student(tiny_encoder, 1)
    assert student.num_layers == 1 and tiny_encoder.num_layers == 2
    texts = TEXTS[:5]
    # the student's output is the teacher's hidden state after block 1, pooled: the same computation
    np.testing.assert_allclose(student.encode(texts), tiny_encoder.encode(texts, layers=1), atol=1e-5)
    with torch.no_grad():
        student.model.encoder.layer[0].output.dense.weight.mul_(3.0)
    assert not np.allclose(student.encode(texts), tiny_encoder.encode(texts, layers=1), atol=1e-3)


@pytest.mark.parametrize("layers", [0, 2, 3, True, "1"])
def test_truncated_student_must_be_shallower(tiny_encoder, layers):
    with pytest.raises(InvalidInputError, match=r"layers must be an int in \[1, 1\]"):
        truncated_student(tiny_encoder, layers)


def test_loss_is_mse_plus_cosine_of_the_targets(tiny_encoder):
    targets = np.random.default_rng(0).normal(size=(len(TEXTS), tiny_encoder.dim)).astype(np.float32)
    loss = Distillation(TEXTS, targets, mse=0.5, cosine=2.0)
    batch = {"text": TEXTS[3:7]}
    value = loss(tiny_encoder, batch)
    s = tiny_encoder.forward(tiny_encoder.tokenize(TEXTS[3:7])).detach()
    t = torch.from_numpy(targets[3:7])
    expect = 0.5 * ((s - t) ** 2).sum(1).mean() + 2.0 * (1 - torch.nn.functional.cosine_similarity(s, t)).mean()
    assert value.requires_grad and abs(float(value.detach()) - float(expect)) < 1e-4


def test_loss_rejects_unknown_texts_bad_targets_and_weights(tiny_encoder):
    targets = np.zeros((len(TEXTS), tiny_encoder.dim), np.float32)
    with pytest.raises(InvalidInputError, match="must have a teacher target"):
        Distillation(TEXTS, targets)(tiny_encoder, {"text": ["never seen"]})
    with pytest.raises(InvalidInputError, match="one row per text"):
        Distillation(TEXTS, targets[:3])
    with pytest.raises(InvalidInputError, match="mse or cosine must be positive"):
        Distillation(TEXTS, targets, mse=0, cosine=0)
    with pytest.raises(InvalidInputError, match="batch must have columns"):
        Distillation(TEXTS, targets)(tiny_encoder, {"anchor": ["a"], "positive": ["b"]})


def test_teacher_targets_are_cached_by_fingerprint_and_texts(tiny_encoder, tmp_path, monkeypatch):
    first = teacher_targets(tiny_encoder, TEXTS, cache=tmp_path)
    assert first.shape == (len(TEXTS), tiny_encoder.dim) and len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_allclose(first, tiny_encoder.encode(TEXTS, normalize=False), atol=1e-5)  # raw vectors
    monkeypatch.setattr(tiny_encoder, "encode", lambda *a, **k: pytest.fail("a cached run must not encode"))
    np.testing.assert_array_equal(teacher_targets(tiny_encoder, TEXTS, cache=tmp_path), first)


def test_distill_learns_the_teacher_space_and_records_it(tiny_encoder, tmp_path):
    teacher = tiny_encoder
    student = truncated_student(teacher, 1)
    with torch.no_grad():  # moved away from the teacher, so there is something to learn
        student.model.encoder.layer[0].output.dense.weight.normal_(0, 0.3)
    for module in student.model.modules():  # no dropout: the loss then measures the distance itself
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    target = teacher.encode(TEXTS, normalize=False)

    def distance() -> float:
        return float(np.mean(((student.encode(TEXTS, normalize=False) - target) ** 2).sum(1)))

    before = distance()
    result = distill(teacher, student, TEXTS, steps=30, batch_size=16, lr=1e-3, out=tmp_path / "run",
                     cache=tmp_path / "cache")
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5]) and distance() < 0.5 * before
    assert student.alignment.space == teacher.space and student.alignment.method == "distilled"
    loaded = Encoder.load(tmp_path / "run")
    assert loaded.num_layers == 1 and loaded.alignment == student.alignment  # read back as written
    assert loaded.space == student.space  # the saved folder is the trained student
    np.testing.assert_allclose(loaded.encode(TEXTS[:4]), student.encode(TEXTS[:4]), atol=1e-5)


def test_a_narrower_student_with_its_own_tokenizer_gets_a_map_to_the_teacher_width(encoder, tiny_path, tmp_path):
    student = Encoder.load(tiny_path)  # 32-d, its own vocabulary; the teacher is the 384-d default model
    assert student.dim == 32 and len(student.tokenizer) != len(encoder.tokenizer)
    result = distill(encoder, student, TEXTS, steps=3, batch_size=16, cache=False)
    assert result.steps == 3 and student.dim == encoder.dim == student.encode(TEXTS[:2]).shape[1]
    assert student.alignment.space == encoder.space


def test_a_student_deeper_than_its_teacher_is_refused(tiny_encoder, tiny_path):
    shallow = truncated_student(tiny_encoder, 1)
    with pytest.raises(InvalidInputError, match="must not be deeper than its teacher, got 2 layers against the "
                                                "teacher's 1"):
        distill(shallow, Encoder.load(tiny_path), TEXTS, steps=1, cache=False)


def test_too_few_texts_for_a_batch(tiny_encoder):
    with pytest.raises(InvalidInputError, match="at least batch_size=64 distinct texts, got 3"):
        distill(tiny_encoder, truncated_student(tiny_encoder, 1), ["a", "b", "a", "c"], steps=1, cache=False)


def test_widen_starts_as_a_padding_identity(tiny_encoder):
    student = truncated_student(tiny_encoder, 1)
    before = student.encode(TEXTS[:3], normalize=False)
    widen(student, 48)
    after = student.encode(TEXTS[:3], normalize=False)
    assert after.shape == (3, 48)
    np.testing.assert_allclose(after[:, :32], before, atol=1e-5)
    assert np.abs(after[:, 32:]).max() == 0


@pytest.mark.parametrize("weights, expected", [
    (None, [True, False, True, False]),  # a small group weighs as much as a large one
    ({"queries": 3, "documents": 1}, [True, True, True, False]),
])
def test_text_groups_are_drawn_in_turn(tiny_encoder, monkeypatch, weights, expected):
    import embedlab.train.distill as module

    seen = []
    real = module.Distillation.forward

    def spy(self, encoder, batch):
        seen.append(set(batch["text"]) <= set(TEXTS[:32]))
        return real(self, encoder, batch)

    monkeypatch.setattr(module.Distillation, "forward", spy)
    student = truncated_student(tiny_encoder, 1)
    distill(tiny_encoder, student, {"queries": TEXTS[:32], "documents": TEXTS[32:]}, steps=4, batch_size=16,
            weights=weights, cache=False)
    assert seen == expected
    assert student.alignment.fit["texts"] == len(TEXTS)


def test_a_student_may_keep_chosen_blocks(tiny_encoder):
    student = truncated_student(tiny_encoder, 1, blocks=(1,))  # the teacher's last block on its embeddings
    assert student.num_layers == 1
    torch.testing.assert_close(student.model.encoder.layer[0].output.dense.weight,
                               tiny_encoder.model.encoder.layer[1].output.dense.weight)
    for bad in ((0, 1), (2,), (-1,), ("0",)):
        with pytest.raises(InvalidInputError, match="blocks must be 1 increasing"):
            truncated_student(tiny_encoder, 1, blocks=bad)


# ---------------------------------------------------------------------------------------------- onnx_student
@pytest.fixture(scope="module")
def l3():
    return Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx")


def _cosines(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_student_encodes_as_its_graph_and_trains_without_touching_the_teacher(encoder, l3):
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    student = onnx_student(encoder, l3)
    assert (student.backend, student.num_layers, student.dim, student.max_length) == (encoder.backend, 3, 384, 128)
    texts = TEXTS[:8] + ["a much longer sentence, with punctuation; and words the vocabulary splits: antidisestablishment"]
    assert _cosines(student.encode(texts), l3.encode(texts)).min() > 0.9999
    assert _cosines(student.encode(texts), encoder.encode(texts)).mean() < 0.9  # another model's space, for now
    distill(encoder, student, TEXTS, steps=3, batch_size=16, lr=1e-3, cache=False)
    assert _cosines(student.encode(texts), l3.encode(texts)).min() < 0.9999  # trained in place
    assert all(torch.equal(v, encoder.model.state_dict()[k]) for k, v in before.items())


def test_onnx_student_needs_a_prebuilt_graph_of_the_teachers_family(encoder, tiny_encoder, l3):
    import copy

    with pytest.raises(InvalidInputError, match=r"onnx_student: prebuilt must be an Encoder of a prebuilt ONNX file"):
        onnx_student(encoder, encoder)
    with pytest.raises(UnsupportedError, match=r"onnx_student: the graph must be a shallower model of the teacher's "
                                               r"width"):
        onnx_student(tiny_encoder, l3)
    extra = copy.deepcopy(encoder)
    extra.model.register_parameter("extra_scale", torch.nn.Parameter(torch.ones(3)))
    with pytest.raises(UnsupportedError, match=r"must hold every parameter .* extra_scale \(3,\): not in the graph"):
        onnx_student(extra, l3)
    relu = copy.deepcopy(encoder)
    for block in relu.model.encoder.layer:
        block.intermediate.intermediate_act_fn = torch.nn.ReLU()
    with pytest.raises(UnsupportedError, match=r"must encode as the graph .* does, got a cosine of 0\.\d+"):
        onnx_student(relu, l3)
