"""``embedlab train contrastive``: fine-tune an encoder on pairs with :func:`embedlab.train.fit.fit`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import FormatOpt, ModelOpt, OutputFormat, load_encoder
from embedlab.cli.render import emit
from embedlab.errors import InvalidInputError
from embedlab.params import check_int

train_app = typer.Typer(no_args_is_help=True, help="Fine-tune an encoder.")
_OWNER = "embedlab train contrastive"


class LossName(str, Enum):
    infonce = "infonce"
    cached = "cached"
    gist = "gist"
    cosent = "cosent"
    maxsim = "maxsim"


@train_app.command("contrastive")
def train_contrastive(
    data: Path = typer.Option(..., "--data", help="JSON-lines pairs (anchor/positive[/negative] or sentence1/"
                                                  "sentence2/score), a BEIR folder (its --split qrels) or an STS folder."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, then the trained model."),
    model: Optional[str] = ModelOpt,
    loss: LossName = typer.Option(LossName.infonce, "--loss", help="infonce, cached (GradCache), gist, cosent "
                                                                   "(scored pairs) or maxsim (late interaction: token "
                                                                   "vectors projected to --token-dim)."),
    guide: Optional[str] = typer.Option(None, "--guide", help="Guide model for --loss gist."),
    hard_negatives: Optional[int] = typer.Option(None, "--hard-negatives", help="Mine N hard negatives per anchor "
                                                  "(ranks 0..50 among the data's positives) before training."),
    split: str = typer.Option("train", "--split", help="Split of a BEIR or STS folder to train on."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (or --epochs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs over the data (or --steps)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per batch."),
    lr: float = typer.Option(2e-5, "--lr", help="Peak learning rate (AdamW)."),
    warmup: float = typer.Option(0.1, "--warmup", help="Fraction of the steps spent warming up."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batches and of training."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="BEIR folder (nDCG@10) or STS folder (Spearman)."),
    eval_split: str = typer.Option("dev", "--eval-split", help="Split of --eval to score."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every N steps (and at the end)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Checkpoint every N steps."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder (or checkpoint)."),
    prompt: list[str] = typer.Option([], "--prompt", help="COLUMN=TEXT: prepend TEXT to a column while training "
                                     "(e.g. anchor='query: '); repeatable. Saved with the model as 'query', "
                                     "'document' ... for encode(prompt_name=...)."),
    exclude_prompt: bool = typer.Option(False, "--exclude-prompt", help="Leave the prompts' tokens out of the mean "
                                        "pooling (they still attend); saved with the model."),
    token_dim: int = typer.Option(128, "--token-dim", min=1, help="Width of the trained token vectors (--loss maxsim)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: torch's)."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Fine-tune MODEL on DATA and write the trained model to OUT (it loads in embedlab and sentence-transformers)."""
    from embedlab.train import losses as L
    from embedlab.train.data import Batches
    from embedlab.train.fit import fit

    if hard_negatives is not None:
        check_int(hard_negatives, _OWNER, "--hard-negatives")
    if guide is not None and loss is not LossName.gist:
        raise InvalidInputError(f"{_OWNER}: --guide must go with --loss gist, got --loss {loss.value}. "
                                "Drop --guide or pass --loss gist.")
    dataset = _read_pairs(data, split)
    want = "scored" if loss is LossName.cosent else "contrastive"
    if dataset.kind != want:
        raise InvalidInputError(f"{_OWNER}: --data must hold {want} pairs for --loss {loss.value}, got {dataset.kind} "
                                "pairs. Use --loss cosent for sentence1/sentence2/score, infonce for anchor/positive.")
    prompts = _parse_prompts(prompt)
    encoder = load_encoder(model, threads=threads)
    if exclude_prompt:
        encoder.include_prompt = False
    mined = None
    if hard_negatives is not None:  # mined with the base model, before training (ranks 0..50 of the positives)
        from embedlab.train.mining import mine_hard_negatives

        dataset = mine_hard_negatives(encoder, dataset, num_negatives=hard_negatives)
        mined = dataset.mining
    if loss is LossName.gist:
        if guide is None:
            raise InvalidInputError(f"{_OWNER}: --guide must name a model with --loss gist, got none. "
                                    "Pass e.g. --guide the base model.")
        loss_fn = L.GISTEmbed(load_encoder(guide, threads=threads))
    elif loss is LossName.maxsim:
        loss_fn = L.MaxSimContrastive(encoder, dim=token_dim)
    else:
        loss_fn = {LossName.infonce: L.InfoNCE, LossName.cached: L.CachedInfoNCE, LossName.cosent: L.CoSENT}[loss]()
    evaluate, metric = _evaluator(eval_data, eval_split)
    batches = Batches(dataset, batch_size, seed=seed, prompts=prompts)
    result = fit(encoder, batches, loss_fn, steps=steps, epochs=epochs, lr=lr, warmup=warmup, seed=seed, out=out,
                 checkpoint_every=checkpoint_every, resume=resume, evaluate=evaluate,
                 eval_every=eval_every, metric=metric)
    summary = {"steps": result.steps, "final_loss": result.losses[-1] if result.losses else None,
               "pairs_per_second": result.pairs_per_second, "seconds": result.seconds,
               "train_seconds": result.train_seconds, "out": str(out)}
    if mined is not None:
        summary.update(hard_negatives=hard_negatives, hard_negative_rows=mined.kept,
                       hard_negative_rows_dropped=mined.dropped)
    if result.evaluations:
        summary.update({f"eval_{k}": v for k, v in result.evaluations[-1].items() if k != "step"})
    if result.best is not None:
        summary.update(best_step=result.best["step"], best_value=result.best["value"], best_path=result.best["path"])
    emit(summary, fmt, f"train {data.name}")


def _parse_prompts(items: list[str]) -> dict[str, str]:
    prompts = {}
    for item in items:
        column, sep, text = item.partition("=")
        if not sep or not column or column in prompts:
            raise InvalidInputError(f"{_OWNER}: --prompt must be COLUMN=TEXT, each column once, got {item!r}. "
                                    "Pass e.g. --prompt 'anchor=query: ' --prompt 'positive=passage: '.")
        prompts[column] = text
    return prompts


def _read_pairs(data: Path, split: str):
    from embedlab.train.data import PairDataset

    if data.is_file():
        return PairDataset.from_jsonl(data)
    if (data / "corpus.jsonl").is_file():
        return PairDataset.from_beir(data, split)
    if data.is_dir() and any(data.glob("sts-*.csv")):
        return PairDataset.from_sts(data, split)
    raise InvalidInputError(f"{_OWNER}: --data must be a JSON-lines file, a BEIR folder (corpus.jsonl) or an STS "
                            f"folder (sts-<split>.csv), got {str(data)!r}. Check the path.")


def _evaluator(folder: Optional[Path], split: str):
    """``(evaluate(encoder) -> dict, metric)`` for a BEIR or STS folder, or ``(None, None)``."""
    if folder is None:
        return None, None
    from embedlab.eval import evaluate_retrieval, evaluate_sts, load_beir, load_sts

    if (folder / "corpus.jsonl").is_file():
        dataset = load_beir(folder)
        if split not in dataset.splits:
            raise InvalidInputError(f"{_OWNER}: --eval-split must be one of {dataset.splits}, got {split!r}.")
        return (lambda encoder: evaluate_retrieval(encoder, dataset, split=split, k_values=(10,))), "ndcg@10"
    if folder.is_dir() and (folder / f"sts-{split}.csv").is_file():
        pairs = load_sts(folder, split)
        return (lambda encoder: evaluate_sts(encoder, pairs)), "spearman"
    raise InvalidInputError(f"{_OWNER}: --eval must be a BEIR folder or an STS folder with sts-{split}.csv, got "
                            f"{str(folder)!r}. Check the path and --eval-split.")


@train_app.command("distill")
def train_distill(
    data: Path = typer.Option(..., "--data", help="Texts to distil on: a BEIR folder (its documents and the --split "
                                                  "queries), a JSON-lines file of {\"text\": ...} or a text file, one "
                                                  "per line."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, then the student model."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher model folder or bundled name (default: "
                                                                  "all-MiniLM-L6-v2)."),
    layers: Optional[int] = typer.Option(None, "--layers", min=1, help="Student = the teacher's first LAYERS blocks "
                                                                       "(default: half the teacher's)."),
    student: Optional[str] = typer.Option(None, "--student", help="Another (smaller) model to train instead of "
                                                                  "a truncated teacher."),
    split: str = typer.Option("train", "--split", help="Queries of this split of a BEIR --data are added."),
    steps: int = typer.Option(..., "--steps", min=1, help="Optimiser steps."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts per batch."),
    lr: float = typer.Option(1e-4, "--lr", help="Peak learning rate (AdamW)."),
    cosine: float = typer.Option(0.0, "--cosine", min=0.0, help="Weight of the cosine term beside the MSE."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batches and of training."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder of the teacher-vector cache (default "
                                                              "$EMBEDLAB_CACHE or .cache/embeddings)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: torch's)."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Distil TEACHER into a smaller student aligned to its space (LEAF): the student's queries search indexes the
    teacher built. The teacher runs on ONNX Runtime (fast, cached), the student trains with torch."""
    from embedlab.train.distill import distill, truncated_student

    owner = "embedlab train distill"
    if layers is not None and student is not None:
        raise InvalidInputError(f"{owner}: pass --layers (truncate the teacher) or --student (another model), got "
                                "both. Drop one.")
    texts = _read_texts(data, split, owner)
    if student is None:  # the teacher's torch weights are needed only to cut the student from them
        torch_teacher = load_encoder(teacher, threads=threads)
        depth = torch_teacher.num_layers
        model = truncated_student(torch_teacher, layers if layers is not None else max(1, depth // 2))
    else:
        model = load_encoder(student, threads=threads)
    fast_teacher = load_encoder(teacher, backend="onnx", threads=threads)
    result = distill(fast_teacher, model, texts, steps=steps, batch_size=batch_size, lr=lr, cosine=cosine, seed=seed,
                     out=out, cache=cache)
    emit({"steps": result.steps, "texts": len(set(texts)), "student_layers": model.num_layers,
          "final_loss": result.losses[-1], "train_seconds": result.train_seconds,
          "aligned_to": model.alignment.model, "out": str(out)}, fmt, f"distill {data.name}")


def _read_texts(data: Path, split: str, owner: str) -> list[str]:
    """The distillation texts of ``--data`` (see ``embedlab train distill --help``)."""
    from embedlab.files import iter_jsonl

    if data.is_dir():
        from embedlab.eval import load_beir

        dataset = load_beir(data)
        return dataset.corpus_texts + (dataset.split(split)[1] if split in dataset.qrels else [])
    if not data.is_file():
        raise InvalidInputError(f"{owner}: --data must be a BEIR folder, a .jsonl or a text file, got {str(data)!r}, "
                                "which does not exist.")
    if data.suffix == ".jsonl":
        texts = []
        for line, row in iter_jsonl(data):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InvalidInputError(f"{owner}: every line of {data} must be an object with a \"text\" string, "
                                        f"got {str(row)[:80]} on line {line}.")
            texts.append(row["text"])
        return texts
    return [line for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
