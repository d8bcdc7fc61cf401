"""The trainer: seeded AdamW runs, exact resume, checkpoints without pickle, evaluation, cancel and bad input.

The data and the loss are tiny stand-ins written here (the interface embedlab.train.data.Batches and
embedlab.train.losses follow), so these tests pin the trainer alone.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embedlab.errors import CancelledError, ConflictError, InvalidInputError
from embedlab.models import Encoder
from embedlab.train.fit import NonFiniteLossError, TrainResult, fit

_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).parent.parent / "models" / "conftest.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
WORDS = _models.WORDS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _models._tiny_bert(tmp_path_factory.mktemp("fit") / "model")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return _models._tiny_bert(tmp_path_factory.mktemp("fit-other") / "model", seed=1)


class Pairs:
    """An endless, seeded, resumable iterator of ``("pairs", {"anchor", "positive"})``; ``len()`` is one epoch."""

    def __init__(self, n: int = 16, batch_size: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rows = [(" ".join(rng.choice(WORDS, 3)), " ".join(rng.choice(WORDS, 4))) for _ in range(n)]
        self.batch_size, self.seed = batch_size, seed
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return len(self.rows) // self.batch_size

    def __iter__(self):
        return self

    def __next__(self):
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))
        rows = [self.rows[i] for i in order[self.position * self.batch_size:(self.position + 1) * self.batch_size]]
        self.position += 1
        return "pairs", {"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class InBatchInfoNCE(torch.nn.Module):
    """In-batch InfoNCE (van den Oord et al. 2018): cross-entropy of cosine / temperature against the diagonal."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, encoder, batch):
        a = torch.nn.functional.normalize(encoder.forward(encoder.tokenize(batch["anchor"])), dim=-1)
        p = torch.nn.functional.normalize(encoder.forward(encoder.tokenize(batch["positive"])), dim=-1)
        return torch.nn.functional.cross_entropy(a @ p.T / self.temperature, torch.arange(len(a)))


class NaNAt(InBatchInfoNCE):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, encoder, batch):
        self.calls += 1
        loss = super().forward(encoder, batch)
        return loss * float("nan") if self.calls == self.step else loss


def weights(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}


def run(tiny, **options) -> tuple[Encoder, TrainResult]:
    encoder = Encoder.load(tiny, threads=1)  # two threads on a busy 2-core machine are ~20x slower
    batches = options.pop("batches", None) or Pairs()
    options.setdefault("steps", 8)
    options.setdefault("lr", 1e-3)
    return encoder, fit(encoder, batches, options.pop("loss", None) or InBatchInfoNCE(), **options)


def test_fit_trains_and_reports(tiny):
    before = weights(Encoder.load(tiny, threads=1))
    encoder, result = run(tiny, steps=12)
    assert result.steps == 12 and len(result.losses) == 12 and result.pairs == 48
    assert 0 < result.train_seconds <= result.seconds and result.pairs_per_second == result.pairs / result.train_seconds
    assert result.resumed_from is None and result.out is None
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4])
    after = weights(encoder)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not encoder.model.training  # given back in eval mode, as loaded


def test_fit_is_seeded_and_leaves_global_rngs_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = run(tiny)
    assert torch.equal(torch.rand(1), expected)
    b, _ = run(tiny)
    c, _ = run(tiny, seed=1)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)  # dropout draws from the seeded generator


def test_epochs_count_len_of_batches(tiny):
    _, result = run(tiny, steps=None, epochs=2)
    assert result.steps == 2 * len(Pairs())


def test_resume_ends_with_the_same_weights_as_one_run(tiny, tmp_path):
    options = dict(steps=10, checkpoint_every=3, warmup=0.2)
    full, _ = run(tiny, out=tmp_path / "full", **options)
    with pytest.raises(CancelledError, match="at 5/10"):
        run(tiny, out=tmp_path / "cut", progress=lambda step, total: step < 5, **options)
    last = tmp_path / "cut" / "checkpoints" / "last"
    assert json.loads((last / "trainer.json").read_text())["step"] == 3
    assert not (tmp_path / "cut" / "modules.json").exists()  # cancelled: no final model
    resumed, result = run(tiny, out=tmp_path / "cut", resume=last, **options)
    assert result.resumed_from == 3 and result.steps == 10 and len(result.losses) == 10
    wf, wr = weights(full), weights(resumed)
    assert all(torch.allclose(wf[k], wr[k], rtol=0, atol=1e-6) for k in wf)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)  # on CPU it is bit-exact


def test_checkpoint_holds_no_pickle(tiny, tmp_path):
    run(tiny, steps=2, out=tmp_path / "run", checkpoint_every=2)
    ckpt = tmp_path / "run" / "checkpoints" / "last"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["model", "optimizer.safetensors", "rng.safetensors", "trainer.json", "weights.safetensors"]
    for path in ckpt.rglob("*"):
        if path.is_file():
            assert path.suffix in {".json", ".safetensors", ".txt"}, path
            assert not path.read_bytes().startswith(b"\x80"), path  # a pickle's protocol opcode
    meta = json.loads((ckpt / "trainer.json").read_text())
    assert meta["data"] == {"epoch": 0, "position": 2} and meta["step"] == 2
    assert Encoder.load(ckpt / "model").dim == 32


def test_resume_from_another_model_or_config_is_an_error(tiny, other, tmp_path):
    run(tiny, steps=4, out=tmp_path / "run", checkpoint_every=2)
    last = tmp_path / "run" / "checkpoints" / "last"
    with pytest.raises(InvalidInputError, match="resume must be a checkpoint of this model"):
        run(other, steps=4, resume=last)
    with pytest.raises(InvalidInputError, match=r"this run's config.*lr=0.001 there, 0.0001 here"):
        run(tiny, steps=4, lr=1e-4, resume=last)
    with pytest.raises(InvalidInputError, match=r"this run's config.*'temperature': 0.05.* there.*'temperature': 0.1"):
        run(tiny, steps=4, loss=InBatchInfoNCE(0.1), resume=last)
    with pytest.raises(InvalidInputError, match="resume must be a checkpoint folder holding trainer.json"):
        run(tiny, steps=4, resume=tmp_path)
    with pytest.raises(ConflictError, match="out must be a new or empty folder"):
        run(tiny, steps=4, out=tmp_path / "run")
    _, result = run(tiny, steps=4, resume=tmp_path / "run")  # a run folder means its checkpoints/last
    assert result.resumed_from == 4 and result.steps == 4


def test_final_folder_loads_in_embedlab_and_sentence_transformers(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder, result = run(tiny, steps=3, out=tmp_path / "run")
    assert result.out == tmp_path / "run" and (result.out / "modules.json").is_file()
    texts = ["the big dog runs", "a red tree near the river"]
    ours = Encoder.load(result.out).encode(texts)
    theirs = SentenceTransformer(str(result.out), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.allclose(ours, theirs, atol=1e-5)
    assert np.allclose(ours, encoder.encode(texts), atol=1e-6)


def test_evaluation_keeps_the_best_checkpoint(tiny, tmp_path):
    scores = iter([0.2, 0.7, 0.4])
    seen = []

    def evaluate(encoder):
        seen.append(encoder.model.training)
        return {"score": next(scores), "other": 1.0}

    _, result = run(tiny, steps=6, eval_every=2, evaluate=evaluate, metric="score", out=tmp_path / "run")
    assert [e["step"] for e in result.evaluations] == [2, 4, 6] and seen == [False] * 3
    best = tmp_path / "run" / "checkpoints" / "best"
    assert result.best == {"step": 4, "metric": "score", "value": 0.7, "path": str(best)}
    assert json.loads((best / "trainer.json").read_text())["step"] == 4
    assert Encoder.load(best / "model").dim == 32
    with pytest.raises(InvalidInputError, match=r"metric must be one of the names evaluate returns \['x'\]"):
        run(tiny, steps=2, evaluate=lambda e: {"x": 1.0}, metric="ndcg@10")


def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tiny, tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last"
    with pytest.raises(NonFiniteLossError, match=rf"loss must be finite, got nan at step 5.*{last}"):
        run(tiny, steps=8, loss=NaNAt(5), out=tmp_path / "run", checkpoint_every=2)
    assert json.loads((last / "trainer.json").read_text())["step"] == 4
    assert not (tmp_path / "run" / "modules.json").exists()


@pytest.mark.parametrize("options, message", [
    (dict(steps=0), "steps must be a positive int, got 0"),
    (dict(steps=None), "pass exactly one of steps and epochs, got steps=None and epochs=None"),
    (dict(steps=3, epochs=1), "pass exactly one of steps and epochs, got steps=3 and epochs=1"),
    (dict(lr=0.0), "lr must be a number > 0.0, got 0.0"),
    (dict(warmup=1.5), r"warmup must be a number in \[0.0, 1.0\], got 1.5"),
    (dict(checkpoint_every=2), "out must be a folder when checkpoint_every is set"),
    (dict(eval_every=2), "evaluate must be a callable when eval_every or metric is set"),
    (dict(device="tpu"), "device must be 'cpu' or an available 'cuda"),
    (dict(loss={"sts": InBatchInfoNCE()}), r"losses must have a loss for data set 'pairs', got losses for \['sts'\]"),
])
def test_bad_settings_are_clear_errors(tiny, options, message):
    with pytest.raises(InvalidInputError, match=message):
        run(tiny, **options)


def test_bad_batches_are_clear_errors(tiny, tmp_path):
    with pytest.raises(InvalidInputError, match="batches must yield at least one batch, got an empty iterator"):
        run(tiny, batches=iter([]))
    with pytest.raises(InvalidInputError, match="got none at step 3"):
        run(tiny, batches=iter([next(Pairs()), next(Pairs())]))
    with pytest.raises(InvalidInputError, match="batches must have a len"):
        run(tiny, batches=iter([next(Pairs())]), steps=None, epochs=1)
    with pytest.raises(InvalidInputError, match="batches must have state_dict"):
        run(tiny, batches=[next(Pairs())], out=tmp_path / "run")
    with pytest.raises(InvalidInputError, match="must return a scalar tensor with gradients"):
        run(tiny, loss=type("Bad", (torch.nn.Module,), {"forward": lambda self, e, b: torch.zeros(2)})())


def test_a_list_of_batches_starts_a_new_epoch_when_it_runs_out(tiny):
    _, result = run(tiny, batches=[next(Pairs())], steps=3)
    assert result.steps == 3


def test_progress_bar_shows_loss_and_pairs_per_second(tiny, capsys):
    run(tiny, steps=2, show_progress=True)
    err = capsys.readouterr().err
    assert "train" in err and "loss=" in err and "pairs_s=" in err


def test_resume_is_exact_with_the_real_batches_and_losses(tiny, tmp_path):
    data = pytest.importorskip("embedlab.train.data")
    losses = pytest.importorskip("embedlab.train.losses")
    words = WORDS[:12]

    def make():
        pairs = data.PairDataset({"anchor": [f"{w} dog" for w in words], "positive": [f"the {w} cat" for w in words]})
        scored = data.PairDataset({"sentence1": [f"{w} tree" for w in words], "sentence2": [f"a {w} river" for w in words],
                                   "score": [float(i % 5) for i in range(len(words))]})
        return data.Batches({"pairs": pairs, "sts": scored}, batch_size=4, seed=0)

    def go(out, **options):
        encoder = Encoder.load(tiny, threads=1)
        fit(encoder, make(), {"pairs": losses.InfoNCE(), "sts": losses.CoSENT()}, steps=8, lr=1e-3, out=out,
            checkpoint_every=3, **options)
        return weights(encoder)

    full = go(tmp_path / "full")
    with pytest.raises(CancelledError):
        go(tmp_path / "cut", progress=lambda step, total: step < 4)
    resumed = go(tmp_path / "cut", resume=tmp_path / "cut")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
