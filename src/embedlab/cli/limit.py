"""``embedlab limit capacity|check|generate|eval``: embedding-dimension limits (LIMIT, Weller et al. 2025)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import BatchOpt, FormatOpt, ModelOpt, OutputFormat, SplitOpt, ThreadsOpt, load_encoder, parse_ints
from embedlab.cli.render import console, emit, recall_table

limit_app = typer.Typer(no_args_is_help=True, help="Embedding-dimension limits (LIMIT, Weller et al. 2025).")
PatienceOpt = typer.Option(1000, "--patience", min=1, help="Early stopping: steps without loss improvement.")
SeedsOpt = typer.Option(2, "--seeds", min=1, help="Random starts tried per probe before it counts as failed.")


@limit_app.command("capacity")
def limit_capacity(
    dims: str = typer.Option("4,8", "--dims", help="Comma-separated embedding dimensions."),
    k: int = typer.Option(2, "--k", min=1, help="Relevant documents per query (all C(n, k) subsets are queries)."),
    seeds: int = SeedsOpt,
    threads: int = ThreadsOpt,
    patience: int = PatienceOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Critical n per dimension: the most documents whose top-k sets free embeddings can all realise."""
    from embedlab.eval.limit import capacity_curve

    curve = capacity_curve(parse_ints(dims, "--dims"), k=k, seeds=tuple(range(seeds)), threads=threads,
                           patience=patience)
    result = {
        "k": k,
        "critical_n": {str(d): r.n for d, r in curve.items()},
        "seconds": {str(d): round(r.seconds, 3) for d, r in curve.items()},
        "probes": {str(d): [[n, ok] for n, ok, _, _ in r.trials] for d, r in curve.items()},
    }
    if fmt is OutputFormat.json:
        emit(result, fmt)
    else:
        emit({f"critical n, d={d}": n for d, n in result["critical_n"].items()}, fmt, f"free-embedding capacity, k={k}")


@limit_app.command("check")
def limit_check(
    data: Path = typer.Option(..., "--data", help="BEIR folder with your qrels."),
    split: str = SplitOpt,
    dim: int = typer.Option(..., "--dim", min=1, help="Embedding dimension to test."),
    seeds: int = SeedsOpt,
    smallest: bool = typer.Option(True, "--smallest/--no-smallest", help="Also search the smallest dimension that works."),
    threads: int = ThreadsOpt,
    patience: int = PatienceOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Can free embeddings of dimension DIM realise these qrels? Failing queries, smallest DIM, qrel-graph density."""
    from embedlab.eval import load_beir
    from embedlab.eval.limit import check_qrels

    dataset = load_beir(data)
    _, _, qrels = dataset.split(split)
    result = check_qrels(qrels, dim, corpus_ids=dataset.corpus_ids, find_smallest=smallest,
                         seeds=tuple(range(seeds)), threads=threads, patience=patience)
    emit(result, fmt, f"free-embedding check: {data.name} {split}, d={dim}")


@limit_app.command("generate")
def limit_generate(
    output: Path = typer.Argument(..., help="Folder to write (BEIR format)."),
    full: bool = typer.Option(False, "--full", help="The paper's full size: 50,000 docs, 1,000 queries, 46-doc core."),
    n_docs: int = typer.Option(46, "--n-docs", min=2, help="Documents (not with --full, which is fixed at 50,000)."),
    k: int = typer.Option(2, "--k", min=1, help="Relevant documents per query."),
    seed: int = typer.Option(0, "--seed", help="Seed of the attribute assignment (the same seed writes the same files)."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Write a LIMIT data set and print its statistics check."""
    from embedlab.eval.limit import FULL, generate, statistics

    if full and n_docs != 46:
        raise typer.BadParameter("--n-docs cannot be combined with --full (the full size is fixed at 50,000).")
    path = generate(output, **({**FULL, "k": k} if full else {"n_docs": n_docs, "k": k}), seed=seed)
    stats = statistics(path)
    emit({"path": str(path), **stats, "problems": len(stats["problems"])}, fmt, "LIMIT data")
    if stats["problems"]:
        raise typer.Exit(1)


@limit_app.command("eval")
def limit_eval(
    data: Path = typer.Option(Path("../shared/data/limit-small"), "--data", help="LIMIT-style BEIR folder."),
    split: str = SplitOpt,
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    dims: str = typer.Option("32,64,128,256,384", "--dims", help="Dense dimensions (Matryoshka truncation)."),
    k: str = typer.Option("2,10,20", "--k", help="Recall cut-offs."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Recall of dense (per dimension), BM25, hybrid and multi-vector retrieval on LIMIT data."""
    from embedlab.eval import load_beir
    from embedlab.eval.limit import evaluate_limit
    from embedlab.models.cache import cached_encode

    encoder = load_encoder(model)
    dataset = load_beir(data)
    vectors = cached_encode(encoder, dataset.corpus_texts, batch_size=batch_size) if len(dataset.corpus_ids) > 5000 else None
    ks = parse_ints(k, "--k")
    rows = evaluate_limit(dataset, encoder, dims=parse_ints(dims, "--dims"), k_values=ks, split=split,
                          corpus_embeddings=vectors, batch_size=batch_size)
    if fmt is OutputFormat.json:
        emit({"data": str(data), "split": split, "results": rows}, fmt)
        return
    console().print(recall_table(f"LIMIT recall (%): {data.name} {split}", "method", rows, ks))
