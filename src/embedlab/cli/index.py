"""Collection commands: ``index`` (JSON lines in, validated whole, resumable), ``search`` (readable hits),
``info``, ``get``, ``delete`` and ``compact`` over a collection folder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from embedlab.cli.options import FormatOpt, IndexKind, Metric, ModelOpt, OutputFormat, load_encoder
from embedlab.cli.render import console, emit, hits_payload, print_hits
from embedlab.errors import ConflictError, DataFormatError, InvalidInputError

PathArg = typer.Argument(..., help="Collection folder.")


@dataclass(frozen=True)
class Document:
    id: Any
    text: str
    metadata: dict | None
    line: int


def index_cmd(
    path: Path = typer.Argument(..., help="Collection folder (created when it does not exist)."),
    input: Path = typer.Argument(..., help="JSON lines: {'id' or '_id', 'text', 'title'?, 'metadata'?} (a BEIR corpus.jsonl works)."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="float32 (n, d) .npy, one row per line; else texts are encoded."),
    model: Optional[str] = ModelOpt,
    metric: Optional[Metric] = typer.Option(None, "--metric", help="Similarity of a new collection [default: cosine]; an existing one keeps its own."),
    index: Optional[IndexKind] = typer.Option(None, "--index", help="Index of a new collection [default: hnsw]; an existing one keeps its own."),
    funnel: Optional[int] = typer.Option(None, "--funnel", min=1, help="New collection: search the first N dims, rescore "
                                         "with the full vectors (for Matryoshka-trained models)."),
    oversample: Optional[int] = typer.Option(None, "--oversample", min=1, help="With --funnel: candidates per hit [default: 8]."),
    text_index: bool = typer.Option(False, "--text-index", help="New collection: keep a BM25 index of the texts "
                                    "(search --mode sparse / hybrid)."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Items per durable batch."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Add or update JSON-lines documents in a collection, creating it if needed.

    The whole input is checked before the first write. Each batch is durable once written; re-running the same
    command resumes: documents already stored with the same text, metadata (and vector) are skipped.
    """
    import numpy as np

    from embedlab.index import Collection

    docs = read_documents(input)
    vecs = _read_vectors(vectors, len(docs)) if vectors is not None else None
    start = time.perf_counter()
    created = not (path / "manifest.json").exists()
    if created:
        encoder = load_encoder(model) if vecs is None or model is not None else None
        dim = int(vecs.shape[1]) if vecs is not None else encoder.dim
        extra = {} if funnel is None else {"funnel": [funnel, dim]}
        if oversample is not None:
            if funnel is None:
                raise InvalidInputError("embedlab index: --oversample needs --funnel, got it alone. Add --funnel N.")
            extra["oversample"] = oversample
        col = Collection.create(path, dim=dim, metric=(metric or Metric.cosine).value,
                                index=(index or IndexKind.hnsw).value, encoder=encoder, text_index=text_index, **extra)
    else:
        col = Collection.open(path, encoder=load_encoder(model) if model else None)
    with col:
        if not created:
            _check_options(col, path, metric, index)
        if vecs is not None and vecs.shape[1] != col.dim:
            raise InvalidInputError(f"embedlab index: --vectors must have {col.dim} columns (the collection's dim), "
                                    f"got {vecs.shape[1]} in {vectors}. Encode with the collection's model.")
        written = skipped = 0
        try:
            with _progress(len(docs)) as advance:
                for s in range(0, len(docs), batch_size):
                    chunk = docs[s : s + batch_size]
                    rows = None if vecs is None else np.asarray(vecs[s : s + len(chunk)], dtype=np.float32)
                    keep = _changed(col, chunk, rows)
                    if keep:
                        col.upsert([chunk[i].id for i in keep], None if rows is None else rows[keep],
                                   texts=[chunk[i].text for i in keep], metadata=[chunk[i].metadata for i in keep])
                    written += len(keep)
                    skipped += len(chunk) - len(keep)
                    advance(len(chunk))
        except KeyboardInterrupt:
            typer.echo(f"interrupted: {written + skipped:,} of {len(docs):,} documents are committed ({written:,} "
                       f"written, {skipped:,} already present); nothing of the batch in flight was kept. Run the "
                       "same command again to resume.", err=True)
            raise typer.Exit(130) from None
        emit({"written": written, "skipped": skipped, "count": col.count(),
              "seconds": round(time.perf_counter() - start, 3), "path": str(path)}, fmt, "index")


def _check_options(col, path: Path, metric: Metric | None, index: IndexKind | None) -> None:
    for option, asked, have in (("--metric", metric, col.metric), ("--index", index, col.index_kind)):
        if asked is not None and asked.value != have:
            raise ConflictError(f"embedlab index: {option} must match the existing collection at {path}, got "
                                f"{asked.value!r} for a collection created with {have!r}. Drop {option}, or index "
                                "into a new folder.")


def read_documents(path: Path) -> list[Document]:
    """Every JSON line as a :class:`Document` (title, when present, prepended to the text), checked whole: a
    malformed line or an id given twice is an error naming the lines, before anything is written."""
    if not path.is_file():
        raise DataFormatError(f"embedlab index: input must be a JSON-lines file, got no file at {path}.")
    docs, first_line = [], {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id = row["id"] if "id" in row else row["_id"]
            text = " ".join(t for t in (row.get("title"), row["text"]) if t)
            metadata = row.get("metadata")
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object with 'id' (or '_id') and 'text'.") from None
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
            raise DataFormatError(f"{path}:{lineno}: id must be a non-empty string or an integer, got {doc_id!r}.")
        if metadata is not None and not isinstance(metadata, dict):
            raise DataFormatError(f"{path}:{lineno}: metadata must be a JSON object, got {type(metadata).__name__}.")
        if doc_id in first_line:
            raise DataFormatError(f"{path}:{lineno}: id {doc_id!r} was already given on line {first_line[doc_id]}; "
                                  "each id must appear once in the input.")
        first_line[doc_id] = lineno
        docs.append(Document(doc_id, text, metadata or None, lineno))
    return docs


def _read_vectors(path: Path, n: int):
    import numpy as np

    try:
        vecs = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"embedlab index: --vectors must be a .npy array, got {path} ({exc}).") from None
    if vecs.ndim != 2 or vecs.shape[0] != n:
        raise InvalidInputError(f"embedlab index: --vectors must hold one row per document, shape ({n}, d), got "
                                f"{vecs.shape} in {path}. Encode the same lines, in order.")
    return vecs


def _changed(col, chunk: list[Document], rows) -> list[int]:
    """Positions in ``chunk`` whose id is new, or stored with other text, metadata or vector (resume skips the rest)."""
    import numpy as np

    present = [i for i, here in enumerate(col.contains([d.id for d in chunk])) if here]
    if not present:
        return list(range(len(chunk)))
    stored = {item["id"]: item for item in col.get([chunk[i].id for i in present])}
    same = set()
    for i in present:
        item, doc = stored[chunk[i].id], chunk[i]
        if item["text"] != doc.text or (item["metadata"] or {}) != (doc.metadata or {}):
            continue
        if rows is not None:
            want = rows[i] / max(float(np.linalg.norm(rows[i])), 1e-12) if col.metric == "cosine" else rows[i]
            if not np.allclose(item["vector"], want, atol=1e-6):
                continue
        same.add(i)
    return [i for i in range(len(chunk)) if i not in same]


class _progress:
    """A progress bar on stderr over ``total`` documents; ``advance(n)`` moves it."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task("index", total=total)

    def __enter__(self):
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        self._bar.stop()


def search_cmd(
    path: Path = PathArg,
    queries: list[str] = typer.Argument(..., help="Query texts (encoded with the collection's model)."),
    k: int = typer.Option(10, "--k", min=1, help="Hits per query."),
    filter: Optional[str] = typer.Option(None, "--filter", help='Filter, e.g. \'pos == "noun" and n_lemmas >= 2\'.'),
    ef: Optional[int] = typer.Option(None, "--ef", min=1, help="efSearch (hnsw) / nprobe (ivf)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the collection's model."),
    oversample: Optional[int] = typer.Option(None, "--oversample", min=1, help="Candidates per hit (funnel or codec collections)."),
    mode: str = typer.Option("dense", "--mode", help="dense | sparse (BM25) | hybrid (needs a --text-index collection)."),
    fusion: str = typer.Option("rrf", "--fusion", help="Hybrid fusion: rrf | weighted | dbsf."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Hybrid weights 'DENSE,SPARSE', e.g. 0.7,0.3."),
    rerank: Optional[Path] = typer.Option(None, "--rerank", help="Cross-encoder folder that reranks the candidates."),
    rerank_candidates: int = typer.Option(100, "--rerank-candidates", min=1, help="Candidates the reranker scores."),
    rerank_weights: Optional[str] = typer.Option(None, "--rerank-weights",
                                                 help="Fuse first-stage and reranker scores (DBSF) 'FIRST,RERANKER', "
                                                      "e.g. 0.5,0.5; default: the reranker's order."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Search a collection with text queries, optionally filtered: rank, id, score, text and metadata per hit."""
    from embedlab.index import Collection

    w = _pair(weights, "--weights", "DENSE,SPARSE")
    rw = _pair(rerank_weights, "--rerank-weights", "FIRST,RERANKER")
    reranker = None
    if rerank is not None:
        from embedlab.models import CrossEncoder

        reranker = CrossEncoder.load(rerank)
    with Collection.open(path, readonly=True, encoder=load_encoder(model) if model else None) as col:
        hits = col.search(list(queries), k, filter=filter, ef=ef, include=("text", "metadata"), oversample=oversample,
                          mode=mode, fusion=fusion, weights=w, rerank=reranker, rerank_candidates=rerank_candidates,
                          rerank_weights=rw)
    results = hits_payload(queries, hits)
    for r in results:
        r["filter"] = filter
    print_hits(results, fmt)


def _pair(raw: Optional[str], option: str, shape: str) -> tuple[float, ...] | None:
    """A ``'A,B'`` option as floats (the search checks there are two, non-negative, with a positive sum)."""
    if raw is None:
        return None
    try:
        return tuple(float(x) for x in raw.split(","))
    except ValueError:
        raise InvalidInputError(f"embedlab search: {option} must be two numbers '{shape}', got {raw!r}.") from None


def info_cmd(path: Path = PathArg, fmt: OutputFormat = FormatOpt) -> None:
    """Count, dimension, metric, index, model, metadata fields and sizes of a collection."""
    from embedlab.index import Collection

    with Collection.open(path, readonly=True) as col:
        stats = col.stats()
        result = {"path": str(path), **stats, "encoder": col.encoder_name, "schema": col.schema}
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(result, default=str))
        return
    emit({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in result.items()}, fmt, f"collection {path}")


def get_cmd(
    path: Path = PathArg,
    ids: list[str] = typer.Argument(..., help="Ids to show."),
    with_vectors: bool = typer.Option(False, "--vectors", help="Include the stored vectors."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """The stored text and metadata (and optionally vectors) of the given ids."""
    from embedlab.index import Collection

    with Collection.open(path, readonly=True) as col:
        items = col.get(_ids(col, ids))
    rows = [{"id": it["id"], "text": it["text"], "metadata": it["metadata"],
             **({"vector": it["vector"].tolist()} if with_vectors else {})} for it in items]
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"items": rows}, default=str))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(rows)} item(s) from {escape(str(path))}", title_justify="left")
    for column in ("id", "text", "metadata"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(escape(str(row["id"])), escape(row["text"] or ""), escape(json.dumps(row["metadata"] or {})))
    console().print(table)


def delete_cmd(
    path: Path = PathArg,
    ids: Optional[list[str]] = typer.Argument(None, help="Ids to delete (or use --filter)."),
    filter: Optional[str] = typer.Option(None, "--filter", help="Delete every item that matches this filter."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Delete items by id or by filter (not both); deleted rows are freed by ``compact``."""
    from embedlab.index import Collection

    if bool(ids) == (filter is not None):
        raise InvalidInputError("embedlab delete: give ids or --filter, got "
                                f"{'both' if ids else 'neither'}. E.g. embedlab delete col/ id1 id2, or --filter 'year < 2020'.")
    with Collection.open(path) as col:
        before = col.count()
        if ids:
            col.delete(_ids(col, ids))
        else:
            col.delete(filter=filter)
        emit({"deleted": before - col.count(), "count": col.count()}, fmt, "delete")


def compact_cmd(path: Path = PathArg, fmt: OutputFormat = FormatOpt) -> None:
    """Rewrite the collection without its deleted rows (readers keep working meanwhile)."""
    from embedlab.index import Collection

    start = time.perf_counter()
    with Collection.open(path) as col:
        rows = col.stats()["rows"]
        with _progress(rows) as advance:
            done = [0]

            def progress(now: int, total: int) -> None:
                advance(max(0, now * rows // max(total, 1) - done[0]))
                done[0] = now * rows // max(total, 1)

            col.compact(progress=progress)
        emit({"rows_before": rows, "rows_after": col.stats()["rows"], "count": col.count(),
              "seconds": round(time.perf_counter() - start, 3)}, fmt, "compact")


def _ids(col, raw: list[str]) -> list:
    """Command-line ids in the collection's id kind (``int`` collections take digit strings)."""
    if col.id_kind != "int":
        return list(raw)
    try:
        return [int(i) for i in raw]
    except ValueError:
        raise InvalidInputError(f"embedlab: ids must be integers for this collection (it stores int ids), got "
                                f"{[i for i in raw if not i.lstrip('-').isdigit()][:3]}.") from None
