"""``embedlab eval sts|retrieval`` (measure an encoder) and ``embedlab bench compression`` (codecs on your data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import (BatchOpt, DimOpt, FormatOpt, LayersOpt, ModelOpt, OutputFormat, SplitOpt,
                                  load_encoder, parse_ints)
from embedlab.cli.render import console, emit

eval_app = typer.Typer(no_args_is_help=True, help="Measure an encoder on STS or retrieval data.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on your own data (a BEIR folder).")


@eval_app.command("sts")
def eval_sts(
    data: Path = typer.Option(..., "--data", help="STS folder (sts-<split>.csv) or one TSV file."),
    split: str = SplitOpt,
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    dim: Optional[int] = DimOpt,
    layers: Optional[int] = LayersOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Spearman correlation of cosine similarity with gold scores."""
    from embedlab.eval import evaluate_sts, load_sts

    pairs = load_sts(data, split if data.is_dir() else None)
    result = evaluate_sts(load_encoder(model), pairs, batch_size=batch_size, dim=dim, layers=layers)
    emit(result, fmt, f"STS {data.name} {split}")


@eval_app.command("retrieval")
def eval_retrieval(
    data: Path = typer.Option(..., "--data", help="BEIR folder."),
    split: str = SplitOpt,
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    k: str = typer.Option("1,3,5,10,100", "--k", help="Comma-separated cut-offs."),
    dim: Optional[int] = DimOpt,
    layers: Optional[int] = LayersOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """nDCG, recall, precision, MRR and MAP at each k, exact search."""
    from embedlab.eval import evaluate_retrieval, load_beir

    ks = parse_ints(k, "--k")
    dataset = load_beir(data)
    result = evaluate_retrieval(load_encoder(model), dataset, split=split, k_values=ks, batch_size=batch_size,
                                dim=dim, layers=layers)
    emit(result, fmt, f"retrieval {data.name} {split}")


@bench_app.command("compression")
def bench_compression(
    data: Path = typer.Option(..., "--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)."),
    split: str = typer.Option("test", "--split", help="Split whose queries are scored."),
    fit_split: Optional[str] = typer.Option(None, "--fit-split", help="Split whose queries calibrate the codecs (default: dev, else train)."),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    codecs: Optional[str] = typer.Option(None, "--codecs", help="Comma-separated codec specs (default: the full set)."),
    oversample: int = typer.Option(4, "--oversample", min=1, help="Rescoring candidates = 10 x oversample."),
    threads: int = typer.Option(1, "--threads", min=1, help="faiss / BLAS threads while timing."),
    codebook_sample: int = typer.Option(20000, "--codebook-sample", min=0, help="Corpus rows that train PQ/OPQ codebooks (0 = calibration queries only)."),
    out: Path = typer.Option(Path("compression-report"), "--out", help="Folder for compression.{json,png,html}."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Quality vs bytes for every codec (with and without rescoring) on a BEIR folder: table, JSON, PNG, HTML."""
    from embedlab.compress import codec as parse_codec
    from embedlab.eval import load_beir
    from embedlab.eval.bench.compression import DEFAULT_CODECS, beir_inputs, run_compression
    from embedlab.eval.bench.compression_report import figures, table, write_all

    specs = tuple(c.strip() for c in codecs.split(",") if c.strip()) if codecs else DEFAULT_CODECS
    for spec in specs:  # every spec is checked before anything is encoded
        parse_codec(spec)
    inputs = beir_inputs(load_beir(data), load_encoder(model), split=split, fit_split=fit_split, batch_size=batch_size,
                         codebook_sample=codebook_sample)
    result = run_compression(inputs, codecs=specs, oversample=oversample, threads=threads,
                             log=lambda line: typer.echo(line, err=True))
    title = f"{inputs.name} {split}: nDCG@10 retention vs RAM bytes ({result.n:,} docs, {result.dim}-d)"
    meta = {"data": str(data), "split": split, "calibration": result.fit_source, "oversample": oversample,
            "threads": threads}
    report = write_all(result, out, name="compression", title=title, meta=meta)
    columns, rows = table(result)
    payload = {"figures": figures(result), "columns": columns, "rows": rows, "notes": report["notes"],
               "skipped": result.skipped, "png": report["png"], "html": report["html"], **meta}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compression.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(payload, default=float))
        return
    from rich.table import Table

    tab = Table(title=title)
    for c in columns:
        tab.add_column(str(c), justify="right")
    for row in rows:
        tab.add_row(*(str(v) for v in row))
    console(pipe_width=220).print(tab)
    for note in report["notes"]:
        typer.echo(note)
    typer.echo(f"wrote {out / 'compression.json'}, {report['png']}, {report['html']}")




@eval_app.command("compat")
def eval_compat(
    collection: Path = typer.Option(..., "--collection", help="Collection built by the old model (created with "
                                                              "--model), holding the --data corpus under its ids."),
    data: Path = typer.Option(..., "--data", help="BEIR folder: the collection's documents, queries and qrels."),
    model: str = typer.Option(..., "--model", help="The new model: aligned to the collection's (distilled, trained "
                                                   "with old_encoder=, or saved with a map), or see --fit-map."),
    fit_map: bool = typer.Option(False, "--fit-map", help="Fit a map from the new model to the collection's model on "
                                                          "the corpus documents first (embedlab.train.compat.align)."),
    pairs_split: Optional[str] = typer.Option(None, "--pairs-split", help="With --fit-map: also fit on this split's "
                                                                          "(query, relevant document) pairs, e.g. train."),
    split: str = SplitOpt,
    batch_size: int = BatchOpt,
    target: float = typer.Option(0.95, "--target", min=0.01, max=1.0, help="Backfill target: this share of the "
                                                                           "re-indexed nDCG@10."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Old model vs new model (+map) on the old index vs full re-indexing, and how many documents to re-encode."""
    from embedlab.eval import load_beir
    from embedlab.eval.compat import compatibility_report
    from embedlab.index import Collection

    dataset = load_beir(data)
    new = load_encoder(model)
    with Collection.open(collection, readonly=True) as old_index:
        if fit_map:
            from embedlab.train.compat import align

            pairs = None
            if pairs_split is not None:  # the split's (query, relevant document) rows
                from embedlab.train import PairDataset

                rows = PairDataset.from_beir(data, pairs_split)
                rows = rows.batch(range(len(rows)))
                pairs = (rows["anchor"], rows["positive"])
            align(new, old_index.encoder, dataset.corpus_texts, pairs=pairs, batch_size=batch_size)
        report = compatibility_report(old_index, new, dataset, split=split, target=target, batch_size=batch_size)
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(report.as_dict(), default=float))
        return
    console().print(report.render())
