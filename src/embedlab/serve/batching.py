"""Dynamic batching: concurrent requests for one model share forward passes.

Each request's texts wait in a per-model queue. A worker task takes the queue's head and, when the last batch
held more than one request (so company is likely) and fewer than ``batch_tokens`` tokens wait, waits ``wait_s``
for more: the clients whose answers just left are back within that window and share the next pass instead of
waiting for the one after it, while a lone client never waits. It then takes whole requests up to
``batch_tokens`` tokens and runs them as one call on the model's single worker thread, off the event loop. The queue is bounded by tokens:
a request that would overflow it is refused at once (:class:`Overloaded`, answered 503 with ``Retry-After``),
and a request whose caller gives up (timeout, disconnect) leaves the queue before it costs a forward pass.

This is the scheme of Triton's and TEI's dynamic batchers, bounded by tokens rather than requests.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """The queue cannot take the request now; retry after ``retry_after`` seconds."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"the encoding queue holds {queued} tokens of a {limit}-token limit; retry shortly")
        self.retry_after = 1


@dataclass(eq=False)
class _Request:
    texts: list[str]
    tokens: int
    future: asyncio.Future
    taken: bool = field(default=False)


class Batcher:
    """Gathers ``encode`` calls into micro-batches for ``run(texts) -> float32 [n, d]``, which is blocking and runs
    on ``executor`` (the model's one worker thread: batchers of one model share it, so nothing else uses the model
    at the same time). ``enabled=False`` runs each request alone (the baseline the serving benchmark compares
    with). ``on_batch(requests, texts, tokens)`` observes every batch."""

    def __init__(self, run: Callable[[list[str]], np.ndarray], executor: ThreadPoolExecutor, *, batch_tokens: int,
                 wait_s: float, max_queue_tokens: int, enabled: bool = True,
                 on_batch: Callable[[int, int, int], None] | None = None) -> None:
        self._run, self._executor = run, executor
        self.batch_tokens, self.wait_s, self.max_queue_tokens, self.enabled = batch_tokens, wait_s, max_queue_tokens, enabled
        self._on_batch = on_batch
        self._queue: collections.deque[_Request] = collections.deque()
        self.queued_tokens = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._last = 0  # requests in the last batch

    async def encode(self, texts: list[str], tokens: int) -> np.ndarray:
        """The vectors of ``texts`` (``tokens``: their token count, which the queue bound counts)."""
        self._bind()
        if self.queued_tokens and self.queued_tokens + tokens > self.max_queue_tokens:
            raise Overloaded(self.queued_tokens, self.max_queue_tokens)
        request = _Request(texts, tokens, self._loop.create_future())
        self._queue.append(request)
        self.queued_tokens += tokens
        self._wakeup.set()
        try:
            return await request.future
        finally:
            if not request.taken:  # cancelled or timed out while queued: free the slot
                self._queue.remove(request)
                self.queued_tokens -= request.tokens

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------------ the worker
    def _bind(self) -> None:
        """Start the worker on the running loop (again, if the app moved to a new loop, as test clients do)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._wakeup = loop, asyncio.Event()
            self._queue.clear()
            self.queued_tokens = 0
            self._task = loop.create_task(self._work(), name="embedlab-batcher")

    def _take(self) -> list[_Request]:
        batch, tokens = [], 0
        while self._queue and (not batch or (self.enabled and tokens + self._queue[0].tokens <= self.batch_tokens)):
            request = self._queue.popleft()
            request.taken = True
            self.queued_tokens -= request.tokens
            tokens += request.tokens
            batch.append(request)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.enabled and self.wait_s > 0 and self._last > 1 and self.queued_tokens < self.batch_tokens:
                await asyncio.sleep(self.wait_s)  # company is likely (the last batch had some): wait for it
            batch = [r for r in self._take() if not r.future.done()]
            self._last = len(batch)
            if not batch:
                continue
            texts = [t for r in batch for t in r.texts]
            if self._on_batch is not None:
                self._on_batch(len(batch), len(texts), sum(r.tokens for r in batch))
            try:
                vectors = await loop.run_in_executor(self._executor, self._run, texts)
            except Exception as exc:  # the requests get the error; the worker lives on
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            start = 0
            for r in batch:
                if not r.future.done():
                    r.future.set_result(vectors[start : start + len(r.texts)])
                start += len(r.texts)
