"""Shared plumbing for the benchmark scripts: data paths, cached embeddings, machine facts, results files.

Every script in ``benchmarks/`` is runnable alone (``python benchmarks/<name>.py``), prints a table,
and writes ``benchmarks/results/<name>.json`` with ``figures``, ``machine``, ``date`` and ``command``;
``python benchmarks/render_docs.py`` then rebuilds ``docs/benchmarks.md`` from all results files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EMBEDLAB_DATA", ROOT.parent / "shared" / "data"))
RESULTS = Path(os.environ.get("EMBEDLAB_RESULTS", ROOT / "benchmarks" / "results"))  # override: confirmation runs
CACHE = ROOT / ".cache" / "embeddings"
WORDNET = DATA / "wordnet-beir"
LIMIT_SMALL = DATA / "limit-small"
STSB = DATA / "stsbenchmark"
BATCH_SIZE = 64  # one batch size for every cached encoding, so every benchmark shares the cache


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, memory, Python, torch and faiss."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [cpu, f"{os.cpu_count()} cores", f"{mem_gb:.0f} GiB RAM", f"Python {platform.python_version()}"]
    for module in ("torch", "faiss", "sentence_transformers", "onnxruntime"):
        if module in sys.modules:
            parts.append(f"{module} {getattr(sys.modules[module], '__version__', '?')}")
    return ", ".join(parts)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(name: str, figures: dict, *, tables: list[dict] | None = None, notes: list[str] | None = None,
                  command: str | None = None, carry: list[str] | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json``.

    ``tables`` are ``{"title", "columns": [...], "rows": [[...], ...]}`` rendered into the docs;
    ``notes`` are sentences shown under them (goals missed, caveats).

    ``carry``: the prefixes of figure names whose experiments this run did not re-run (their kept results are
    gone, e.g. on a fresh machine). Those figures and the tables and notes not about this run's figures (a title
    or note is about the figures its first word names: "LEAF: ..." goes with ``leaf_*``; a table whose title this
    run produced is this run's) are taken from the previous file; ``carried`` records each carried figure's own
    run (date, commit, command, kept across successive partial runs) and a note names them: a partial re-run never
    silently drops or re-dates a figure.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures, tables, notes = dict(figures), list(tables or []), list(notes or [])
    path = RESULTS / f"{name}.json"
    carried: dict[str, dict] = {}
    if carry and path.exists():
        previous = json.loads(path.read_text())
        origin = {k: previous[k] for k in ("date", "commit", "command")}
        carried = {k: previous.get("carried", {}).get(k, origin) for k in previous["figures"]
                   if k not in figures and k.startswith(tuple(carry))}
    if carried:
        measured = tuple(figures)

        def about_this_run(text: str) -> bool:
            word = (text.split() or [""])[0].strip(".,:;()").lower()
            return any(f.startswith(word + "_") for f in measured)

        titles = {t["title"] for t in tables}
        tables += [t for t in previous.get("tables", []) if t["title"] not in titles
                   and not about_this_run(t["title"])]
        notes += [n for n in previous.get("notes", []) if not n.startswith("carried ") and not about_this_run(n)]
        figures.update({k: previous["figures"][k] for k in carried})
        for run in sorted({json.dumps(o, sort_keys=True) for o in carried.values()}):
            o = json.loads(run)
            names = sorted(k for k, v in carried.items() if v == o)
            notes.append(f"carried from the run of {o['date']} (commit {o['commit']}, {o['command']}), "
                         f"not re-run here: {', '.join(names)}.")
    payload = {
        "figures": figures,
        "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "commit": git_commit(),
        "tables": tables,
        "notes": notes,
        **({"carried": carried} if carried else {}),
    }
    from embedlab.files import atomic_write

    atomic_write(path, (json.dumps(payload, indent=2, default=_json_default) + "\n").encode())
    return path


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_table(title: str, columns: list[str], rows: list[list]) -> dict:
    """Print a table with rich and return it in the ``tables`` form of :func:`write_results`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(str(c), justify="right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console().print(table)
    return {"title": title, "columns": columns, "rows": [[fmt(v) for v in row] for row in rows]}


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


# ---------------------------------------------------------------- cached WordNet embeddings
def default_encoder():
    from embedlab.models import Encoder

    return Encoder.load()


def wordnet():
    from embedlab.eval import load_beir

    return load_beir(WORDNET)


def wordnet_corpus_embeddings(encoder=None, dataset=None) -> np.ndarray:
    """The full WordNet-BEIR corpus (117,659 x 384 float32) with the default model, cached under ``.cache/``.

    The first call encodes the corpus (~9 minutes on 2 quiet cores) and records the encoding's peak
    RSS beside the cache (see :func:`wordnet_encode_stats`).
    """
    import resource
    import time

    from embedlab.models.cache import cached_encode

    encoder = encoder or default_encoder()
    dataset = dataset or wordnet()
    stats = CACHE / f"wordnet-corpus-{encoder.fingerprint}.stats.json"
    start = time.perf_counter()
    vectors = cached_encode(encoder, dataset.corpus_texts, root=CACHE, batch_size=BATCH_SIZE)
    if not stats.exists():
        stats.write_text(json.dumps({
            "seconds": time.perf_counter() - start,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "n": len(vectors),
        }))
    return vectors


def wordnet_encode_stats(encoder) -> dict | None:
    """``{"seconds", "peak_rss_gb", "n"}`` measured when the WordNet corpus cache was built, if it was."""
    stats = CACHE / f"wordnet-corpus-{encoder.fingerprint}.stats.json"
    return json.loads(stats.read_text()) if stats.exists() else None


def wordnet_query_embeddings(split: str = "test", encoder=None, dataset=None) -> tuple[list[str], np.ndarray]:
    """``(query_ids, [nq, 384] float32)`` for the queries judged in ``split``, cached."""
    from embedlab.models.cache import cached_encode

    encoder = encoder or default_encoder()
    dataset = dataset or wordnet()
    ids, texts, _ = dataset.split(split)
    return ids, cached_encode(encoder, texts, root=CACHE, batch_size=BATCH_SIZE)


def wordnet_subcorpus(dataset, split: str, others: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a WordNet sub-corpus for ``split``: every document its qrels judge plus ``others`` more drawn
    with ``seed``, in corpus order; the same rows for every model evaluated on it (for evaluations that cannot afford
    the 117k corpus per model)."""
    _, _, qrels = dataset.split(split)
    relevant = {d for judged in qrels.values() for d in judged}
    rng = np.random.default_rng(seed)
    rest = [i for i in rng.permutation(len(dataset.corpus_ids)).tolist() if dataset.corpus_ids[i] not in relevant]
    rows = sorted([i for i, d in enumerate(dataset.corpus_ids) if d in relevant] + rest[:others])
    return [dataset.corpus_ids[i] for i in rows], [dataset.corpus_texts[i] for i in rows]


# ---------------------------------------------------------------- experiments kept between runs
def child_argv() -> list[str]:
    """This script's arguments for a child process that runs one experiment: without ``--fresh`` and ``--only``."""
    argv = [a for a in sys.argv[1:] if a != "--fresh"]
    if "--only" in argv:
        i = j = argv.index("--only")
        j += 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        argv = argv[:i] + argv[j:]
    return argv


def run_experiments(script: str, work: Path, exps: dict, args) -> dict | None:
    """Each experiment of ``exps`` (``name -> fn(args, work) -> dict``) in a child process of ``script`` (so that its
    peak RSS is its own), kept by :func:`kept_experiments`: ``args.only`` (default all) in order, ``args.fresh`` re-runs.
    In the child (``args.child`` names its experiment) the result is written for the parent and None returned."""
    import subprocess
    import time

    if args.child:
        payload = exps[args.child](args, work)
        (work / f"{args.child}.child.json").write_text(json.dumps(payload, indent=2, default=_json_default))
        return None

    def run(name: str) -> dict:
        started = time.perf_counter()
        subprocess.run([sys.executable, script, "--child", name, *child_argv()], check=True)
        payload = json.loads((work / f"{name}.child.json").read_text())
        return {**payload, "wall_seconds": time.perf_counter() - started}

    return kept_experiments(work, args.only or list(exps), list(exps), run, fresh=args.fresh)


def kept_experiments(work: Path, names: list[str], known: list[str], run, *, fresh: bool = False) -> dict:
    """``{name: result}``: each of ``names`` run by ``run(name) -> dict`` (in a child process, say), unless
    ``work/<name>.json`` holds its kept result and not ``fresh``; a run's folder ``work/<name>`` is cleared first and its
    result kept with its date and commit, so an interrupted benchmark resumes with the next experiment. Kept results
    of the other ``known`` experiments are added, for the report."""
    import shutil
    import time

    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        kept = work / f"{name}.json"
        if kept.exists() and not fresh:
            results[name] = json.loads(kept.read_text())
            print(f"{name}: kept result from {results[name]['date']} (commit {results[name]['commit']})", flush=True)
            continue
        print(f"{name}: running", flush=True)
        shutil.rmtree(work / name, ignore_errors=True)
        payload = run(name)
        payload.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=git_commit())
        kept.write_text(json.dumps(payload, indent=2, default=_json_default))
        results[name] = payload
    for name in known:
        if name not in results and (work / f"{name}.json").exists():
            results[name] = json.loads((work / f"{name}.json").read_text())
    return results
