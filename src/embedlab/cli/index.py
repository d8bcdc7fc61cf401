"""``embedlab index`` (JSON lines into a collection folder) and ``embedlab search`` (readable hits)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import FormatOpt, IndexKind, Metric, ModelOpt, OutputFormat, load_encoder
from embedlab.cli.render import emit, hits_payload, print_hits
from embedlab.errors import ConflictError, DataFormatError


def index_cmd(
    path: Path = typer.Argument(..., help="Collection folder (created when it does not exist)."),
    input: Path = typer.Argument(..., help="JSON lines: {'id' or '_id', 'text', 'title'?, 'metadata'?} (a BEIR corpus.jsonl works)."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="float32 (n, d) .npy aligned with the lines; else texts are encoded."),
    model: Optional[str] = ModelOpt,
    metric: Optional[Metric] = typer.Option(None, "--metric", help="Similarity of a new collection [default: cosine]; an existing one keeps its own."),
    index: Optional[IndexKind] = typer.Option(None, "--index", help="Index of a new collection [default: hnsw]; an existing one keeps its own."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Items per durable batch."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Add (upsert) JSON-lines documents to a collection, creating it if needed."""
    import numpy as np

    from embedlab.index import Collection

    rows = read_documents(input)
    vecs = np.load(vectors, mmap_mode="r") if vectors is not None else None
    start = time.perf_counter()
    if (path / "manifest.json").exists():
        col = Collection.open(path, encoder=load_encoder(model) if model else None)
        for option, asked, have in (("--metric", metric, col.metric), ("--index", index, col.index_kind)):
            if asked is not None and asked.value != have:
                col.close()
                raise ConflictError(f"embedlab index: {option} must match the existing collection at {path}, got "
                                    f"{asked.value!r} for a collection created with {have!r}. Drop {option}, or index "
                                    "into a new folder.")
    else:
        encoder = load_encoder(model) if vecs is None or model is not None else None
        dim = int(vecs.shape[1]) if vecs is not None else encoder.dim
        col = Collection.create(path, dim=dim, metric=(metric or Metric.cosine).value,
                                index=(index or IndexKind.hnsw).value, encoder=encoder)
    with col:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            col.upsert([r[0] for r in chunk], None if vecs is None else np.asarray(vecs[s : s + len(chunk)]),
                       texts=[r[1] for r in chunk], metadata=[r[2] for r in chunk])
        emit({"added": len(rows), "count": col.count(), "seconds": time.perf_counter() - start, "path": str(path)},
             fmt, "index")


def read_documents(path: Path) -> list[tuple]:
    """``(id, text, metadata)`` per JSON line; the title, when present, is prepended to the text."""
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


def search_cmd(
    path: Path = typer.Argument(..., help="Collection folder."),
    queries: list[str] = typer.Argument(..., help="Query texts (encoded with the collection's model)."),
    k: int = typer.Option(10, "--k", min=1, help="Hits per query."),
    filter: Optional[str] = typer.Option(None, "--filter", help='Filter, e.g. \'pos == "noun" and n_lemmas >= 2\'.'),
    ef: Optional[int] = typer.Option(None, "--ef", min=1, help="efSearch (hnsw) / nprobe (ivf)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the collection's model."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Search a collection with text queries, optionally filtered: rank, id, score, text and metadata per hit."""
    from embedlab.index import Collection

    with Collection.open(path, readonly=True, encoder=load_encoder(model) if model else None) as col:
        hits = col.search(list(queries), k, filter=filter, ef=ef)
        items = [col.get(hits[q].ids.tolist()) for q in range(len(queries))]
    results = hits_payload(queries, hits, items)
    for r in results:
        r["filter"] = filter
    print_hits(results, fmt)
