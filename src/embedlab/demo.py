"""``embedlab demo``: the main job on embedded defaults, as one readable report (about a minute on 2 cores).

1. Text in: the 37 seed-paper abstracts become a searchable, filtered collection (default model, HNSW).
2. Three text searches, one of them filtered, shown as readable hits.
3. Quality: STS-B test Spearman, and nDCG@10 / recall@10 on a WordNet-BEIR slice (test queries against their
   target documents plus seeded distractors) searched through a collection.
4. Compression: the same slice in int8 and binary + float32-rescore collections; nDCG@10 retention vs float32.
5. LIMIT (Weller et al. 2025): where one vector per text fails, and what BM25, hybrid and MaxSim recover.
6. The three commands a user runs next on their own data.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from embedlab.eval import evaluate_run, evaluate_sts, load_beir, load_sts
from embedlab.eval.limit import evaluate_limit
from embedlab.index import Collection
from embedlab.models import Encoder

SEARCHES = (("compressing embedding vectors to save memory", None),
            ("why can a single vector not retrieve every combination of documents?", None),
            ("training large language models as text embedding models", "year >= 2025"))
SLICE_QUERIES = 500
SLICE_DOCS = 10_000
LIMIT_K = (2, 10, 20)
NEXT_STEPS = ("embedlab index my-collection/ my-docs.jsonl --index hnsw",
              "embedlab search my-collection/ \"your question\" --k 5 --filter 'year >= 2024'",
              "embedlab bench compression --data my-beir-folder/ --split test")


def run_demo(*, model: str | None = None, data: str | Path = "../shared/data", fmt="table") -> dict:
    """Run every step; print a report (or one JSON object when ``fmt == "json"``) and return the figures."""
    from embedlab.cli.options import OutputFormat
    from embedlab.cli.render import console as make_console

    data = Path(data)
    as_json = getattr(fmt, "value", fmt) == OutputFormat.json.value
    out = make_console()
    say = (lambda *a, **k: None) if as_json else out.print
    started = time.perf_counter()
    encoder = Encoder.load(model)
    name = model or "all-MiniLM-L6-v2 (bundled)"
    say(f"[bold]embedlab demo[/bold] — model {name}, {encoder.dim}-d, data from {data}")
    report: dict = {"model": encoder.source, "dim": encoder.dim}
    with tempfile.TemporaryDirectory() as tmp:
        report["searches"] = _papers(encoder, data / "seed-papers" / "corpus.jsonl", Path(tmp) / "papers", say)
        report["sts_spearman"] = _sts(encoder, data / "stsbenchmark", say)
        report["wordnet_slice"] = _wordnet_slice(encoder, data / "wordnet-beir", Path(tmp), say)
    report["limit"] = _limit(encoder, data / "limit-small", say)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["next"] = list(NEXT_STEPS)
    if as_json:
        print(json.dumps(report, default=float))
        return report
    say("\n[bold]Next, on your own data[/bold] (JSON lines with id, text and metadata; a BEIR folder to measure):")
    for command in NEXT_STEPS:
        say(f"  {command}", markup=False)
    say(f"\n[dim]demo finished in {report['seconds']:.0f} s[/dim]")
    return report


def _papers(encoder: Encoder, corpus: Path, folder: Path, say) -> list[dict]:
    from embedlab.cli.render import hits_payload, hits_table
    from embedlab.errors import DataFormatError

    if not corpus.is_file():
        raise DataFormatError(f"embedlab demo: data must hold seed-papers/corpus.jsonl, got no file at {corpus}. "
                              "Pass --data with the shared data folder.")
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    say(f"\n[bold]1. Index[/bold] {len(rows)} paper abstracts ({corpus}) into a collection (HNSW, cosine)")
    with Collection.create(folder, dim=encoder.dim, index="hnsw", encoder=encoder) as col:
        with warnings.catch_warnings(record=True) as truncated:  # said once below, in words
            warnings.simplefilter("always")
            col.add([r["_id"] for r in rows], texts=[f"{r['title']}. {r['text']}" for r in rows],
                    metadata=[{k: v for k, v in r["metadata"].items() if v not in ("", None)} for r in rows])
        say(f"   {col.count()} documents, {col.stats()['disk_bytes_per_vector']:.0f} bytes on disk per document"
            + (f"; abstracts past the model's {encoder.max_length} tokens were truncated" if truncated else ""))
        say("\n[bold]2. Search[/bold] (top 3; the last query is filtered)")
        results = []
        for query, where in SEARCHES:
            hits = col.search([query], k=3, filter=where, include=("text", "metadata"))
            result = hits_payload([query + (f"   [filter: {where}]" if where else "")], hits)[0]
            results.append(result)
            say(hits_table(result))
    return results


def _sts(encoder: Encoder, folder: Path, say) -> float:
    say("\n[bold]3. Quality[/bold]")
    pairs = load_sts(folder, "test")
    spearman = evaluate_sts(encoder, pairs)["spearman"]
    say(f"   STS Benchmark test ({len(pairs):,} pairs): Spearman {100 * spearman:.2f} (published: 82.03)")
    return spearman


def _wordnet_slice(encoder: Encoder, folder: Path, tmp: Path, say) -> dict:
    dataset = load_beir(folder)
    query_ids, query_texts, qrels = dataset.split("test")
    query_ids, query_texts = query_ids[:SLICE_QUERIES], query_texts[:SLICE_QUERIES]
    qrels = {q: qrels[q] for q in query_ids}
    position = {doc_id: i for i, doc_id in enumerate(dataset.corpus_ids)}
    targets = sorted({position[d] for rel in qrels.values() for d in rel})
    rest = np.setdiff1d(np.arange(len(dataset.corpus_ids)), targets)
    rng = np.random.default_rng(0)
    rows = np.sort(np.concatenate([targets, rng.choice(rest, SLICE_DOCS - len(targets), replace=False)]))
    ids = [dataset.corpus_ids[i] for i in rows]
    say(f"   WordNet-BEIR slice: {len(query_ids)} test queries against {len(ids):,} documents "
        f"({len(targets)} targets + seeded distractors)")
    docs = encoder.encode([dataset.corpus_texts[i] for i in rows], show_progress=True)
    queries = encoder.encode(query_texts)
    figures = {}
    for label, options in (("float32", {"index": "flat"}),
                           ("int8", {"index": "flat", "codec": "int8", "rescore": None}),
                           ("binary + float32 rescore x4", {"index": "flat", "codec": "binary", "rescore": "float32",
                                                            "oversample": 4})):
        with Collection.create(tmp / label.split()[0], dim=encoder.dim, **options) as col:
            col.add(ids, docs)
            hits = col.search(queries, k=10)
            ram = col.stats()["ram_bytes_per_vector"]
        run = {q: {d: float(s) for d, s in zip(hits.ids[i], hits.scores[i]) if d is not None}
               for i, q in enumerate(query_ids)}
        metrics = evaluate_run(run, qrels, (10,))
        figures[label] = {"ndcg@10": metrics["ndcg@10"], "recall@10": metrics["recall@10"], "ram_bytes_per_vector": ram}
    base = figures["float32"]["ndcg@10"]
    for label, f in figures.items():
        f["retention"] = f["ndcg@10"] / base if base else float("nan")
    say(_slice_table(figures))
    return figures


def _slice_table(figures: dict):
    from rich.table import Table

    table = Table(title="4. Compression on the WordNet slice: the same vectors, three collections", title_justify="left")
    for column in ("collection", "nDCG@10", "recall@10", "retention", "RAM bytes / vector"):
        table.add_column(column, justify="left" if column == "collection" else "right")
    for label, f in figures.items():
        table.add_row(label, f"{100 * f['ndcg@10']:.2f}", f"{100 * f['recall@10']:.2f}", f"{100 * f['retention']:.2f}%",
                      f"{f['ram_bytes_per_vector']:,.0f}")
    return table


def _limit(encoder: Encoder, folder: Path, say) -> dict:
    from embedlab.cli.render import recall_table

    dataset = load_beir(folder)
    rows = evaluate_limit(dataset, encoder, k_values=LIMIT_K)
    say(recall_table(f"5. LIMIT-small, recall (%): {len(dataset.corpus_ids)} docs, 2 answers per query",
                     "method", rows, LIMIT_K))
    say("   One vector per text cannot realise every top-2 set (Weller et al. 2025); BM25 and MaxSim can.")
    return rows
