"""Serving under load: embedlab's HTTP API beside Infinity, loopback only, bounded in time and count.

Measured in one run on this machine, client and servers sharing its cores (the client is this process: 32
threads, one keep-alive connection each, single-text requests; every loop stops at its deadline or its request
cap):

1. **Mixed load**: 32 clients for ``--duration`` s (60), half single-text ``/v1/embeddings``, half filtered text
   search on the WordNet collection (117,659 glosses, HNSW, the corpus metadata): errors, p50/p99, requests/s.
2. **Dynamic batching**: embedding-only load against the same server with ``--no-batching``; the ratio of req/s.
3. **Beside Infinity** (``infinity-emb`` 0.0.78, ``server,torch`` extras, in its own virtualenv under
   ``.cache/infinity-venv`` — it pins sentence-transformers 3 and transformers 4 — installed here on first use,
   serving the same bundled model folder with ``--engine torch --device cpu``): the same client and texts for
   ``--compare-duration`` s (30) against embedlab torch fp32, embedlab ONNX int8 and Infinity; ratios of req/s
   and p99, and the cosine of the two servers' fp32 vectors.
4. **schemathesis** (its CLI) against the live server's OpenAPI schema with an API key: failures found.

Writes ``benchmarks/results/serving.json``. Usage: ``python benchmarks/serve_load.py [--duration 60]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, wordnet, wordnet_corpus_embeddings, write_results  # noqa: E402

INFINITY_VENV = ROOT / ".cache" / "infinity-venv"
INFINITY = "infinity-emb[server,torch]==0.0.78"
WORK = ROOT / ".cache" / "serve-bench"
MAX_REQUESTS_PER_CLIENT = 100_000
KEY = "serve-bench-key-0123456789abcdef"
FILTERS = ['pos == "verb"', "n_examples >= 1", 'pos == "noun" and n_lemmas >= 2', 'domain == "noun.artifact"']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(process: subprocess.Popen, port: int, path: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}); its log ends:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server was not ready within {timeout:.0f} s; its log ends:\n{log.read_text()[-3000:]}")


class Server:
    """A server subprocess on 127.0.0.1, stopped on exit."""

    def __init__(self, label: str, argv: list[str], ready: str, env: dict | None = None) -> None:
        self.label, self.port = label, free_port()
        self.log = WORK / f"{label}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([*argv, "--port", str(self.port)], stdout=out, stderr=out,
                                            env={**os.environ, **(env or {})})
        wait_ready(self.process, self.port, ready, self.log)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def embedlab_server(label: str, data: Path, *options: str) -> Server:
    keys = json.dumps({"keys": [{"key": KEY, "scopes": ["read", "write"]}]})
    return Server(label, [sys.executable, "-m", "embedlab.cli", "serve", "--data", str(data), *options],
                  "/readyz", env={"EMBEDLAB_API_KEYS": keys})


def ensure_infinity() -> Path:
    exe = INFINITY_VENV / "bin" / "infinity_emb"
    if not exe.exists():
        print(f"installing {INFINITY} into {INFINITY_VENV} (once) ...")
        subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
        pip = [str(INFINITY_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, INFINITY], check=True)
    return exe


# ---------------------------------------------------------------- the client
def load(port: int, requests, *, clients: int, seconds: float, headers: dict) -> dict:
    """``clients`` threads send ``requests(client, i) -> (kind, path, body bytes)`` until the deadline (or the
    per-client cap); each response must be a 200 with a JSON body. Returns counts, req/s and latency percentiles."""
    records: list[list] = [[] for _ in range(clients)]
    samples: dict = {}  # the first body of each failing status, to say what went wrong
    start = time.perf_counter()
    deadline = start + seconds
    headers = {"Content-Type": "application/json", **headers}

    def run(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline:
                break
            kind, path, body = requests(c, i)
            t = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 200 and bool(json.loads(payload))
                status = response.status
                if not ok:
                    samples.setdefault(status, payload[:500].decode(errors="replace"))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, status = False, type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            records[c].append((kind, time.perf_counter() - t, ok, status))
        conn.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [r for rs in records for r in rs]
    latency = np.array([r[1] for r in flat]) * 1000
    errors = [r[3] for r in flat if not r[2]]
    out = {"requests": len(flat), "seconds": elapsed, "requests_per_s": len(flat) / elapsed, "errors": len(errors),
           "error_kinds": sorted({str(e) for e in errors}), "error_samples": {str(k): v for k, v in samples.items()},
           "p50_ms": float(np.percentile(latency, 50)),
           "p99_ms": float(np.percentile(latency, 99))}
    for kind in sorted({r[0] for r in flat}):
        lat = np.array([r[1] for r in flat if r[0] == kind]) * 1000
        out[kind] = {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)),
                     "p99_ms": float(np.percentile(lat, 99))}
    return out


def embed_requests(texts: list[str], model: str, path: str = "/v1/embeddings"):
    bodies = [json.dumps({"input": [t], "model": model}).encode() for t in texts]
    return lambda c, i: ("embed", path, bodies[(c * 7919 + i) % len(bodies)])


def mixed_requests(texts: list[str], model: str):
    embed = embed_requests(texts, model)
    searches = [json.dumps({"queries": [t], "k": 10, "filter": FILTERS[j % len(FILTERS)]}).encode()
                for j, t in enumerate(texts)]

    def make(c: int, i: int):
        if (c + i) % 2 == 0:
            return embed(c, i)
        return "search", "/v1/collections/wordnet/search", searches[(c * 7919 + i) % len(searches)]
    return make


def fetch_vectors(port: int, texts: list[str], model: str, path: str, headers: dict) -> np.ndarray:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps({"input": texts, "model": model}).encode(),
                 {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {body}")
    return np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], dtype=np.float32)


def build_collection(data: Path, encoder) -> None:
    """The WordNet corpus as a served collection (cached embeddings, texts and metadata), built once."""
    from embedlab.index import Collection

    folder = data / "wordnet"
    marker = WORK / f"wordnet-{encoder.fingerprint}.built"
    if folder.exists() and marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    dataset = wordnet()
    x = wordnet_corpus_embeddings(encoder, dataset)
    print(f"building the WordNet collection ({len(x):,} rows) ...")
    with Collection.create(folder, dim=x.shape[1], index="hnsw", encoder=encoder) as col:
        for s in range(0, len(x), 8192):
            col.add(dataset.corpus_ids[s : s + 8192], x[s : s + 8192], texts=dataset.corpus_texts[s : s + 8192],
                    metadata=dataset.metadata[s : s + 8192])
    marker.write_text("ok\n")


def schemathesis_failures(folder: Path) -> dict:
    """The schemathesis CLI against a server of its own (fresh data folder, one collection ``fuzz`` that every
    generated path names): the coverage and fuzzing phases, every check but positive_data_acceptance."""
    data, report, config = folder / "data", folder / "junit.xml", folder / "schemathesis.toml"
    config.write_text('[parameters]\n"path.name" = "fuzz"\n')
    with embedlab_server("embedlab-schemathesis", data) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", "/v1/collections", json.dumps({"name": "fuzz", "dim": 384, "index": "flat"}),
                     {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        assert conn.getresponse().status == 201
        return _schemathesis(srv.port, report, config)


def _schemathesis(port: int, report: Path, config: Path) -> dict:
    exe = Path(sys.executable).parent / "schemathesis"
    argv = [str(exe), "--config-file", str(config), "run", f"http://127.0.0.1:{port}/openapi.json", "--max-examples", "25", "--seed", "1",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance", "-H", f"Authorization: Bearer {KEY}",
            "--report", "junit", "--report-junit-path", str(report), "--phases", "examples,coverage,fuzzing"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=report.parent)
    import xml.etree.ElementTree as ET

    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    return {"failures": failures, "operations": tests, "exit_code": run.returncode,
            "summary": run.stdout.strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the mixed load")
    parser.add_argument("--compare-duration", type=float, default=30.0, help="seconds of each embedding-only load")
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    from embedlab.models import Encoder

    WORK.mkdir(parents=True, exist_ok=True)
    encoder = Encoder.load()
    folder = str(encoder.source)
    data = WORK / "data"
    build_collection(data, encoder)
    _, texts, _ = wordnet().split("test")
    texts = list(texts)
    auth = {"Authorization": f"Bearer {KEY}"}
    model = "minilm"
    infinity = ensure_infinity()
    sample = texts[:64]
    run = dict(clients=args.clients, headers=auth)
    results: dict = {}

    with embedlab_server("embedlab-torch", data, "--model", f"{model}=default") as srv:
        print(f"mixed load: {args.clients} clients x {args.duration:.0f} s ...")
        results["mixed"] = load(srv.port, mixed_requests(texts, model), seconds=args.duration, **run)
        print(json.dumps(results["mixed"]))
        results["torch"] = load(srv.port, embed_requests(texts, model), seconds=args.compare_duration, **run)
        print("torch, batching on:", json.dumps(results["torch"]))
        ours = fetch_vectors(srv.port, sample, model, "/v1/embeddings", auth)
    with embedlab_server("embedlab-torch-unbatched", data, "--model", f"{model}=default", "--no-batching") as srv:
        results["unbatched"] = load(srv.port, embed_requests(texts, model), seconds=args.compare_duration, **run)
        print("torch, batching off:", json.dumps(results["unbatched"]))
    with embedlab_server("embedlab-onnx-int8", data, "--model", f"{model}=default,backend=onnx,precision=int8") as srv:
        results["int8"] = load(srv.port, embed_requests(texts, model), seconds=args.compare_duration, **run)
        print("onnx int8:", json.dumps(results["int8"]))
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        results["schemathesis"] = schemathesis_failures(Path(tmp))
    print("schemathesis:", results["schemathesis"])
    infinity_argv = [str(infinity), "v2", "--model-id", folder, "--engine", "torch", "--device", "cpu",
                     "--host", "127.0.0.1", "--no-model-warmup"]
    with Server("infinity", infinity_argv, "/health", env={"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
                                                           "INFINITY_ANONYMOUS_USAGE_STATS": "0"}) as srv:
        results["infinity"] = load(srv.port, embed_requests(texts, folder, "/embeddings"),
                                   seconds=args.compare_duration, **run)
        print("infinity:", json.dumps(results["infinity"]))
        theirs = fetch_vectors(srv.port, sample, folder, "/embeddings", {})
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    cosine = (ours * theirs).sum(axis=1)

    m, t, u, q, inf = (results[k] for k in ("mixed", "torch", "unbatched", "int8", "infinity"))
    figures = {
        "load_errors": m["errors"], "load_p50_ms": m["p50_ms"], "load_p99_ms": m["p99_ms"],
        "load_requests_per_s": m["requests_per_s"], "load_requests": m["requests"],
        "batching_throughput_ratio": t["requests_per_s"] / u["requests_per_s"],
        "throughput_ratio_vs_infinity": t["requests_per_s"] / inf["requests_per_s"],
        "p99_ratio_vs_infinity": t["p99_ms"] / inf["p99_ms"],
        "best_backend_throughput_ratio_vs_infinity": q["requests_per_s"] / inf["requests_per_s"],
        "best_backend_p99_ratio_vs_infinity": q["p99_ms"] / inf["p99_ms"],
        "cosine_vs_infinity_min": float(cosine.min()),
        "schemathesis_failures": results["schemathesis"]["failures"],
        "compare_errors": t["errors"] + u["errors"] + q["errors"] + inf["errors"],
    }
    rows = [[name, r["requests"], r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["errors"]]
            for name, r in (("embedlab torch fp32 (batching)", t), ("embedlab torch fp32, no batching", u),
                            ("embedlab ONNX int8 (batching)", q), ("Infinity 0.0.78 torch", inf))]
    tables = [
        print_table(f"Mixed load: {args.clients} clients x {args.duration:.0f} s, single-text embeddings + filtered "
                    "search on WordNet (117,659 rows)",
                    ["requests", "req/s", "p50 ms", "p99 ms", "errors", "embed p99 ms", "search p99 ms"],
                    [[m["requests"], m["requests_per_s"], m["p50_ms"], m["p99_ms"], m["errors"],
                      m["embed"]["p99_ms"], m["search"]["p99_ms"]]]),
        print_table(f"Single-text embeddings: {args.clients} clients x {args.compare_duration:.0f} s each, same client "
                    "and texts", ["server", "requests", "req/s", "p50 ms", "p99 ms", "errors"], rows),
        print_table("Ratios", ["figure", "value", "goal"], [
            ["batching_throughput_ratio", figures["batching_throughput_ratio"], ">= 3"],
            ["throughput_ratio_vs_infinity (torch fp32)", figures["throughput_ratio_vs_infinity"], ">= 1.0"],
            ["p99_ratio_vs_infinity (torch fp32)", figures["p99_ratio_vs_infinity"], "<= 1.0"],
            ["best_backend_throughput_ratio_vs_infinity (ONNX int8)",
             figures["best_backend_throughput_ratio_vs_infinity"], ">= 2"],
            ["cosine_vs_infinity_min (fp32, 64 texts)", figures["cosine_vs_infinity_min"], ">= 0.999"],
            ["schemathesis_failures", figures["schemathesis_failures"], "0"]]),
    ]
    notes = [f"Client and servers share this machine's {os.cpu_count()} cores; the client is one Python process "
             f"with {args.clients} threads. Servers run one after another in one run; nothing else was meant to "
             "run meanwhile."]
    path = write_results("serving", figures, tables=tables, notes=notes)
    (WORK / "raw.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
