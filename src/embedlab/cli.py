"""The ``embedlab`` command line: one sub-command per stage, option names as in the Python API.

Every command that reports numbers takes ``--format json`` and then prints exactly one JSON object
on stdout (progress and warnings go to stderr).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from embedlab.errors import EmbedlabError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="embedlab: text embeddings for retrieval.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure an encoder on STS or retrieval data.")
app.add_typer(eval_app, name="eval")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on your own data (a BEIR folder).")
app.add_typer(bench_app, name="bench")
limit_app = typer.Typer(no_args_is_help=True, help="Embedding-dimension limits (LIMIT, Weller et al. 2025).")
app.add_typer(limit_app, name="limit")


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


ModelOpt = typer.Option(None, "--model", help="Model folder or bundled name (default: all-MiniLM-L6-v2).")
BatchOpt = typer.Option(64, "--batch-size", min=1, help="Texts per forward pass.")
FormatOpt = typer.Option(OutputFormat.table, "--format", help="table (human) or json (one object on stdout).")


def _load_encoder(model: Optional[str], **options):
    from embedlab.models import Encoder

    return Encoder.load(model, **options)


def emit(result: dict, fmt: OutputFormat, title: str = "") -> None:
    """Print ``result`` as one JSON object, or as a readable two-column table."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(result, default=float))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(str(key), f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


@app.command()
def encode(
    input: Path = typer.Argument(..., help="Text file, one text per line, or JSON lines with a 'text' field."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the float32 [n, d] .npy array."),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    prompt: Optional[str] = typer.Option(None, help="Prefix added to every text."),
    dim: Optional[int] = typer.Option(None, help="Keep the first dim coordinates (Matryoshka)."),
    layers: Optional[int] = typer.Option(None, help="Pool the hidden state of this layer."),
    backend: str = typer.Option("torch", help="torch, or onnx (ONNX Runtime, exported and cached on first use)."),
    precision: str = typer.Option("fp32", help="fp32, or int8 (backend onnx: dynamic int8 quantisation)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads while encoding (default: every core)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Padded-token budget per batch."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Encode texts into a .npy file."""
    import numpy as np

    texts = _read_texts(input)
    encoder = _load_encoder(model, backend=backend, precision=precision, threads=threads)
    vectors = encoder.encode(texts, prompt=prompt, batch_size=batch_size, max_tokens=max_tokens, dim=dim,
                             layers=layers)
    np.save(output, vectors)
    emit({"n": int(vectors.shape[0]), "dim": int(vectors.shape[1]), "output": str(output)}, fmt, "encode")


def _read_texts(path: Path) -> list[str]:
    from embedlab.errors import DataFormatError

    if not path.is_file():
        raise DataFormatError(f"embedlab encode: input must be a text or JSON-lines file, got no file at {path}.")
    texts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if path.suffix == ".jsonl":
            try:
                texts.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object with a 'text' field.") from None
        else:
            texts.append(line)
    return texts


@eval_app.command("sts")
def eval_sts(
    data: Path = typer.Option(..., "--data", help="STS folder (sts-<split>.csv) or one TSV file."),
    split: str = typer.Option("test", "--split"),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    dim: Optional[int] = typer.Option(None),
    layers: Optional[int] = typer.Option(None),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Spearman correlation of cosine similarity with gold scores."""
    from embedlab.eval import evaluate_sts, load_sts

    result = evaluate_sts(_load_encoder(model), load_sts(data, split if data.is_dir() else None),
                          batch_size=batch_size, dim=dim, layers=layers)
    emit(result, fmt, f"STS {data.name} {split}")


@eval_app.command("retrieval")
def eval_retrieval(
    data: Path = typer.Option(..., "--data", help="BEIR folder."),
    split: str = typer.Option("test", "--split"),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    k: str = typer.Option("1,3,5,10,100", "--k", help="Comma-separated cut-offs."),
    dim: Optional[int] = typer.Option(None),
    layers: Optional[int] = typer.Option(None),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """nDCG, recall, precision, MRR and MAP at each k, exact search."""
    from embedlab.eval import evaluate_retrieval, load_beir

    result = evaluate_retrieval(_load_encoder(model), load_beir(data), split=split, k_values=_parse_ints(k, "--k"),
                                batch_size=batch_size, dim=dim, layers=layers)
    emit(result, fmt, f"retrieval {data.name} {split}")


def _parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{option} must be comma-separated integers, got {text!r}.") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{option} must hold positive integers, got {text!r}.")
    return values


@app.command("index")
def index_cmd(
    path: Path = typer.Argument(..., help="Collection folder (created when it does not exist)."),
    input: Path = typer.Argument(..., help="JSON lines: {'id' or '_id', 'text', 'metadata'?} (a BEIR corpus.jsonl works)."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="float32 [n, d] .npy aligned with the lines; else texts are encoded."),
    model: Optional[str] = ModelOpt,
    metric: str = typer.Option("cosine", "--metric", help="cosine | ip | l2 (new collections)."),
    index: str = typer.Option("hnsw", "--index", help="flat | hnsw | ivf (new collections)."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Items per durable batch."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Add (upsert) JSON-lines documents to a collection, creating it if needed."""
    import time

    import numpy as np

    from embedlab.index import Collection

    rows = _read_jsonl_docs(input)
    vecs = np.load(vectors, mmap_mode="r") if vectors is not None else None
    start = time.perf_counter()
    if (path / "manifest.json").exists():
        col = Collection.open(path, encoder=model)
    else:
        dim = int(vecs.shape[1]) if vecs is not None else _load_encoder(model).dim
        col = Collection.create(path, dim=dim, metric=metric, index=index,
                                encoder=None if vecs is not None and model is None else (model or _load_encoder(None)))
    with col:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            col.upsert([r[0] for r in chunk], None if vecs is None else np.asarray(vecs[s : s + len(chunk)]),
                       texts=[r[1] for r in chunk], metadata=[r[2] for r in chunk])
        emit({"added": len(rows), "count": col.count(), "seconds": time.perf_counter() - start, "path": str(path)},
             fmt, "index")


def _read_jsonl_docs(path: Path) -> list[tuple]:
    from embedlab.errors import DataFormatError

    if not path.is_file():
        raise DataFormatError(f"embedlab index: input must be a JSON-lines file, got no file at {path}.")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id = row["id"] if "id" in row else row["_id"]
            text = " ".join(t for t in (row.get("title"), row["text"]) if t)
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object with 'id' (or '_id') and 'text'.") from None
        out.append((doc_id, text, row.get("metadata")))
    return out


@app.command("search")
def search_cmd(
    path: Path = typer.Argument(..., help="Collection folder."),
    queries: list[str] = typer.Argument(..., help="Query texts (encoded with the collection's model)."),
    k: int = typer.Option(10, "--k", min=1, help="Hits per query."),
    filter: Optional[str] = typer.Option(None, "--filter", help='Filter, e.g. \'pos == "noun" and n_lemmas >= 2\'.'),
    ef: Optional[int] = typer.Option(None, "--ef", min=1, help="efSearch (hnsw) / nprobe (ivf)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the collection's model."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Search a collection with text queries, optionally filtered."""
    from embedlab.index import Collection

    with Collection.open(path, readonly=True, encoder=model) as col:
        hits = col.search(list(queries), k, filter=filter, ef=ef)
    results = [{"query": q, "strategy": hits.strategy[i],
                "hits": [{"id": h, "score": float(s)} for h, s in zip(hits[i].ids.tolist(), hits[i].scores.tolist())]}
               for i, q in enumerate(queries)]
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"results": results}))
        return
    for r in results:
        emit({f"{j + 1}. {h['id']}": h["score"] for j, h in enumerate(r["hits"])}, fmt, f"{r['query']} ({r['strategy']})")


@bench_app.command("compression")
def bench_compression(
    data: Path = typer.Option(..., "--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)."),
    split: str = typer.Option("test", "--split", help="Queries scored."),
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
    from embedlab.eval import load_beir
    from embedlab.eval.compression import DEFAULT_CODECS, beir_inputs, run_compression
    from embedlab.eval.compression_report import figures, table, write_all

    specs = tuple(c.strip() for c in codecs.split(",") if c.strip()) if codecs else DEFAULT_CODECS
    inputs = beir_inputs(load_beir(data), _load_encoder(model), split=split, fit_split=fit_split, batch_size=batch_size,
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
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=title)
    for c in columns:
        tab.add_column(str(c), justify="right")
    for row in rows:
        tab.add_row(*(str(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 220).print(tab)  # a pipe gets the whole table, unwrapped
    for note in report["notes"]:
        typer.echo(note)
    typer.echo(f"wrote {out / 'compression.json'}, {report['png']}, {report['html']}")


# ------------------------------------------------------------------ limit (Weller et al. 2025)
@limit_app.command("capacity")
def limit_capacity(
    dims: str = typer.Option("4,8", "--dims", help="Comma-separated embedding dimensions."),
    k: int = typer.Option(2, "--k", min=1, help="Relevant documents per query (all C(n, k) subsets are queries)."),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Random starts tried per probe before it counts as failed."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads."),
    patience: int = typer.Option(1000, "--patience", min=1, help="Early stopping: steps without loss improvement."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Critical n per dimension: the most documents whose top-k sets free embeddings can all realise."""
    from embedlab.eval.capacity import capacity_curve

    curve = capacity_curve(_parse_ints(dims, "--dims"), k=k, seeds=tuple(range(seeds)), threads=threads,
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
    split: str = typer.Option("test", "--split"),
    dim: int = typer.Option(..., "--dim", min=1, help="Embedding dimension to test."),
    seeds: int = typer.Option(2, "--seeds", min=1, help="Random starts per dimension."),
    smallest: bool = typer.Option(True, "--smallest/--no-smallest", help="Also search the smallest dimension that works."),
    threads: int = typer.Option(1, "--threads", min=1),
    patience: int = typer.Option(1000, "--patience", min=1, help="Early stopping: steps without loss improvement."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Can free embeddings of dimension D realise these qrels? Failing queries, smallest D, qrel-graph density."""
    from embedlab.eval import load_beir
    from embedlab.eval.capacity_check import check_qrels

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
    k: int = typer.Option(2, "--k", min=1),
    seed: int = typer.Option(0, "--seed"),
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
    split: str = typer.Option("test", "--split"),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    dims: str = typer.Option("32,64,128,256,384", "--dims", help="Dense dimensions (Matryoshka truncation)."),
    k: str = typer.Option("2,10,20", "--k", help="Recall cut-offs."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Recall of dense (per dimension), BM25, hybrid and multi-vector retrieval on LIMIT data."""
    from embedlab.eval import load_beir
    from embedlab.eval.cache import cached_encode
    from embedlab.eval.limit_eval import evaluate_limit

    encoder = _load_encoder(model)
    dataset = load_beir(data)
    vectors = cached_encode(encoder, dataset.corpus_texts, batch_size=batch_size) if len(dataset.corpus_ids) > 5000 else None
    ks = _parse_ints(k, "--k")
    rows = evaluate_limit(dataset, encoder, dims=_parse_ints(dims, "--dims"), k_values=ks, split=split,
                          corpus_embeddings=vectors, batch_size=batch_size)
    if fmt is OutputFormat.json:
        emit({"data": str(data), "split": split, "results": rows}, fmt)
        return
    from rich.console import Console

    from embedlab.demo import recall_table

    Console().print(recall_table(f"LIMIT recall (%): {data.name} {split}", "method", rows, ks))


@app.command()
def demo(
    model: Optional[str] = ModelOpt,
    limit_small: Path = typer.Option(Path("../shared/data/limit-small"), help="LIMIT-small folder, if present."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Generate a LIMIT-style set, evaluate the model on it and on LIMIT-small, print a table."""
    from embedlab.demo import run_demo

    run_demo(model=model, limit_small=limit_small, fmt=fmt)


def main() -> None:
    """Console entry point: embedlab errors become one clear line on stderr and exit code 2."""
    import os

    # The process edge: quiet transformers' per-load weight bars (our own bars stay).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app()
    except EmbedlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
