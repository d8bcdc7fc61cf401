"""``embedlab train contrastive``: the wiring (training itself is tested in tests/train/test_fit.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).parent.parent / "models" / "conftest.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _models._tiny_bert(tmp_path_factory.mktemp("cli-train") / "model")


@pytest.fixture
def pairs(tmp_path):
    words = _models.WORDS[:12]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"anchor": f"{w} dog", "positive": f"the {w} cat"}) + "\n" for w in words))
    return path


def test_train_contrastive_writes_a_model(cli, tiny, pairs, tmp_path):
    from embedlab.models import Encoder

    out = tmp_path / "run"
    result = cli("train", "contrastive", "--data", pairs, "--out", out, "--model", tiny, "--steps", 3,
                 "--batch-size", 4, "--lr", 1e-3, "--checkpoint-every", 2, "--threads", 1, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["out"] == str(out)
    assert Encoder.load(out).encode(["the dog"]).shape == (1, 32)
    assert (out / "checkpoints" / "last" / "trainer.json").is_file()


@pytest.mark.parametrize("args, message", [
    (("--steps", 0), "fit: steps must be a positive int, got 0"),
    (("--steps", 2, "--loss", "cosent"), "--data must hold scored pairs for --loss cosent"),
    (("--steps", 2, "--guide", "x"), "--guide must go with --loss gist"),
    (("--steps", 2, "--loss", "gist"), "--guide must name a model with --loss gist"),
    (("--steps", 2, "--hard-negatives", 0), "--hard-negatives must be a positive int, got 0"),
    (("--steps", 2, "--batch-size", 64), "batch_size must be at most the rows of every data set"),
])
def test_train_contrastive_bad_input_is_one_clear_line(cli, tiny, pairs, tmp_path, args, message):
    result = cli("train", "contrastive", "--data", pairs, "--out", tmp_path / "run", "--model", tiny,
                 "--threads", 1, "--batch-size", 4, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr


def test_train_contrastive_evaluates_and_keeps_the_best(cli, tiny, pairs, tmp_path):
    from embedlab.eval.limit import generate

    folder = generate(tmp_path / "limit", n_docs=8, seed=0)
    out = tmp_path / "run"
    result = cli("train", "contrastive", "--data", pairs, "--out", out, "--model", tiny, "--steps", 4,
                 "--batch-size", 4, "--eval", folder, "--eval-split", "test", "--eval-every", 2, "--threads", 1,
                 "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "eval_ndcg@10" in summary and summary["best_step"] in (2, 4)
    assert summary["best_path"] == str(out / "checkpoints" / "best")
    bad = cli("train", "contrastive", "--data", pairs, "--out", tmp_path / "other", "--model", tiny, "--steps", 2,
              "--batch-size", 4, "--eval", folder, "--eval-split", "dev")
    assert bad.exit_code == 2 and "--eval-split must be one of" in bad.stderr


def test_train_contrastive_uses_the_negatives_in_the_data(cli, tiny, tmp_path):
    words = _models.WORDS[:12]
    path = tmp_path / "triplets.jsonl"
    path.write_text("".join(json.dumps({"anchor": f"{w} dog", "positive": f"the {w} cat", "negative": f"{w} river"})
                            + "\n" for w in words))
    result = cli("train", "contrastive", "--data", path, "--out", tmp_path / "run", "--model", tiny, "--steps", 2,
                 "--batch-size", 4, "--loss", "cached", "--threads", 1, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2


def test_train_contrastive_mines_hard_negatives_first(cli, tiny, pairs, tmp_path):
    # a random tiny model ranks one hub text first for every anchor: rows share that negative, so the
    # no-duplicates sampler can only fill batches of one here (a trained model spreads its negatives)
    result = cli("train", "contrastive", "--data", pairs, "--out", tmp_path / "run", "--model", tiny, "--steps", 2,
                 "--batch-size", 1, "--hard-negatives", 2, "--threads", 1, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["hard_negatives"] == 2
    assert (summary["hard_negative_rows"], summary["hard_negative_rows_dropped"]) == (12, 0)


def test_train_contrastive_saves_its_prompts_and_trains_late_interaction(cli, tiny, pairs, tmp_path):
    from embedlab.models import Encoder

    out = tmp_path / "run"
    result = cli("train", "contrastive", "--data", pairs, "--out", out, "--model", tiny, "--steps", 2,
                 "--batch-size", 4, "--loss", "maxsim", "--token-dim", 8, "--prompt", "anchor=query: ",
                 "--prompt", "positive=passage: ", "--exclude-prompt", "--threads", 1, "--format", "json")
    assert result.exit_code == 0, result.output
    model = Encoder.load(out)
    assert model.prompts == {"query": "query: ", "document": "passage: "} and model.include_prompt is False
    assert model.token_dim == 8 and model.encode_tokens(["the dog"]).vectors.shape[1] == 8
    bad = cli("train", "contrastive", "--data", pairs, "--out", tmp_path / "other", "--model", tiny, "--steps", 2,
              "--batch-size", 4, "--prompt", "anchor")
    assert bad.exit_code == 2 and "--prompt must be COLUMN=TEXT" in bad.stderr
