"""The dynamic batcher: shared forward passes, a token budget, a bounded queue, and freed slots."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedlab.serve.batching import Batcher, Overloaded


def make(run=None, **options):
    calls, batches = [], []

    def default(texts):
        calls.append(list(texts))
        return np.array([[len(t)] for t in texts], dtype=np.float32)

    options = {"batch_tokens": 100, "wait_s": 0.01, "max_queue_tokens": 1000, **options}
    batcher = Batcher(run or default, ThreadPoolExecutor(1), on_batch=lambda *b: batches.append(b), **options)
    return batcher, calls, batches


def test_concurrent_requests_share_one_forward_pass():
    batcher, calls, batches = make()

    async def main():
        return await asyncio.gather(*(batcher.encode(["x" * i], 1) for i in range(1, 9)))

    out = asyncio.run(main())
    assert [o[0, 0] for o in out] == list(range(1, 9))  # each request gets its own rows back
    assert len(calls) == 1 and batches == [(8, 8, 8)]


def test_the_token_budget_splits_batches_and_batching_off_runs_one_each():
    batcher, calls, _ = make(batch_tokens=10)

    async def main(b):
        return await asyncio.gather(*(b.encode(["t"], 4) for _ in range(6)))

    asyncio.run(main(batcher))
    assert [len(c) for c in calls] == [2, 2, 2]  # 4 + 4 <= 10 < 12
    off, calls_off, _ = make(enabled=False)
    asyncio.run(main(off))
    assert [len(c) for c in calls_off] == [1] * 6


def test_a_full_queue_refuses_at_once():
    gate = threading.Event()
    batcher, _, _ = make(run=lambda texts: (gate.wait(5), np.zeros((len(texts), 1), np.float32))[1],
                         max_queue_tokens=10, wait_s=0)

    async def main():
        first = asyncio.ensure_future(batcher.encode(["a"], 5))  # taken by the worker, which blocks
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.encode(["b"], 8))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="8 tokens of a 10-token limit"):
            await batcher.encode(["c"], 5)
        gate.set()
        await asyncio.gather(first, queued)

    asyncio.run(main())


def test_a_cancelled_request_frees_its_slot_and_costs_no_forward_pass():
    gate = threading.Event()
    seen = []

    def run(texts):
        seen.append(list(texts))
        gate.wait(5)
        return np.zeros((len(texts), 1), np.float32)

    batcher, _, _ = make(run=run, wait_s=0)

    async def main():
        first = asyncio.ensure_future(batcher.encode(["first"], 1))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.encode(["gone"], 7))
        await asyncio.sleep(0.01)
        assert batcher.queued_tokens == 7
        gone.cancel()
        await asyncio.sleep(0.01)
        assert batcher.queued_tokens == 0
        gate.set()
        await first
        await batcher.encode(["after"], 1)

    asyncio.run(main())
    assert seen == [["first"], ["after"]]


def test_an_error_reaches_every_request_of_the_batch_and_the_worker_lives_on():
    state = {"fail": True}

    def run(texts):
        if state.pop("fail", False):
            raise RuntimeError("model failed")
        return np.ones((len(texts), 1), np.float32)

    batcher, _, _ = make(run=run)

    async def main():
        results = await asyncio.gather(*(batcher.encode(["x"], 1) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert (await batcher.encode(["y"], 1))[0, 0] == 1

    asyncio.run(main())


def test_concurrent_http_requests_are_batched(live_url):
    import httpx

    async def main():
        async with httpx.AsyncClient(base_url=live_url, timeout=60) as c:
            rs = await asyncio.gather(*(c.post("/v1/embeddings", json={"input": f"text number {i}"})
                                        for i in range(16)))
            assert {r.status_code for r in rs} == {200}
            return (await c.get("/metrics")).text

    metrics = asyncio.run(main())
    count = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("embedlab_batch_requests_count"))
    total = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("embedlab_batch_requests_sum"))
    assert total == 16 and count < 16  # fewer forward passes than requests
    assert 'embedlab_requests_total{method="POST",route="/v1/embeddings",status="200"} 16.0' in metrics
    assert "embedlab_tokens_embedded_total" in metrics and "embedlab_queue_tokens" in metrics


class Gated:
    """The session's encoder, whose ``encode`` waits for ``gate`` (so a test can hold the worker busy)."""

    def __init__(self, encoder) -> None:
        self._encoder, self.gate, self.calls = encoder, threading.Event(), []

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, texts, **options):
        self.calls.append(list(texts))
        self.gate.wait(30)
        return self._encoder.encode(texts, **options)


def test_overload_timeout_and_disconnect_over_http(make_app, encoder):
    import httpx

    from tests.serve.conftest import live

    gated = Gated(encoder)
    app = make_app(encoder=gated, max_queue_tokens=8, timeout_s=3.0, batch_wait_ms=0)
    queued = lambda: app.state.server.models["all-MiniLM-L6-v2"]._batchers[None].queued_tokens  # noqa: E731
    results = {}

    def send(label, text):
        results[label] = httpx.post(f"{url}/v1/embeddings", json={"input": text}, timeout=30)

    with live(app) as url:
        first = threading.Thread(target=send, args=("first", "first text"))
        first.start()
        for _ in range(300):  # the worker holds "first" and waits at the gate
            if gated.calls:
                break
            time.sleep(0.01)
        with pytest.raises(httpx.TimeoutException):  # a client that gives up while queued ...
            httpx.post(f"{url}/v1/embeddings", json={"input": "second text"}, timeout=0.3)
        for _ in range(300):
            if queued() == 0:
                break
            time.sleep(0.01)
        assert queued() == 0  # ... frees its slot
        waiting = threading.Thread(target=send, args=("waiting", "third text"))  # 4 tokens of the 8
        waiting.start()
        for _ in range(300):
            if queued() == 4:
                break
            time.sleep(0.01)
        r = httpx.post(f"{url}/v1/embeddings", json={"input": "a somewhat longer text"}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "overloaded" and "8-token limit" in r.json()["error"]["message"]
        first.join()
        waiting.join()
        assert results["first"].status_code == 504 and results["waiting"].status_code == 504
        assert "did not finish within 3 s" in results["waiting"].json()["error"]["message"]
        gated.gate.set()
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "after"}, timeout=30).status_code == 200
    assert ["second text"] not in gated.calls  # the request that left never cost a forward pass


def test_requests_beyond_the_in_flight_limit_get_503_and_probes_still_answer(make_app, encoder):
    import httpx

    from tests.serve.conftest import live

    gated = Gated(encoder)
    app = make_app(encoder=gated, max_in_flight=1)
    with live(app) as url:
        held = threading.Thread(target=lambda: httpx.post(f"{url}/v1/embeddings", json={"input": "x"}, timeout=30))
        held.start()
        for _ in range(300):
            if gated.calls:
                break
            time.sleep(0.01)
        r = httpx.post(f"{url}/v1/embeddings", json={"input": "y"}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "in flight" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
        gated.gate.set()
        held.join()
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "y"}, timeout=30).status_code == 200
