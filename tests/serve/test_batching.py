"""The dynamic batcher: shared forward passes, a token budget, a bounded queue, and freed slots."""

from __future__ import annotations

import asyncio
import threading
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
