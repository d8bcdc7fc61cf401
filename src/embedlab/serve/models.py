"""The served models: an :class:`~embedlab.models.Encoder` each, its worker thread, token counting and the
dynamic batchers (one per prompt the model defines, sharing the worker thread); and the served rerankers, a
:class:`~embedlab.models.CrossEncoder` each with its own worker thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from embedlab.serve.batching import Batcher
from embedlab.serve.metrics import Metrics
from embedlab.serve.settings import ModelSpec, Settings


def load_encoder(spec: ModelSpec, threads: int | None = None):
    from embedlab.models import Encoder

    return Encoder.load(spec.path, backend=spec.backend, precision=spec.precision, threads=threads)


def load_reranker(spec: ModelSpec, threads: int | None = None):
    from embedlab.models import CrossEncoder

    return CrossEncoder.load(spec.path, backend=spec.backend, threads=threads)


class ServedReranker:
    """``name``, ``spec`` and ``model`` (a cross-encoder) of one served reranker; :meth:`call` runs a reranked search
    on its worker thread, one at a time (the model's forward pass uses every thread it is given)."""

    def __init__(self, name: str, spec: ModelSpec, model) -> None:
        self.name, self.spec, self.model = name, spec, model
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"embedlab-rerank-{name}")

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "owned_by": "embedlab", "task": "rerank", "dim": 1,
                "max_tokens": int(self.model.max_length), "backend": self.spec.backend, "precision": "fp32"}

    async def call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ServedModel:
    """``name``, ``spec`` and ``encoder`` of one served model; :meth:`encode` goes through the batcher."""

    def __init__(self, name: str, spec: ModelSpec, encoder, settings: Settings, metrics: Metrics) -> None:
        self.name, self.spec, self.encoder = name, spec, encoder
        encoder.warn_truncation = False  # every response reports its truncated inputs
        self.max_tokens = int(encoder.max_length)
        self._batch_tokens = settings.batch_tokens
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"embedlab-{name}")
        self._metrics = metrics
        observe = metrics.on_batch(name)
        prompts = [None] + [p for p in ("query", "document") if p in (encoder.prompts or {})]
        self._batchers = {p: Batcher(self._runner(p), self._executor, batch_tokens=settings.batch_tokens,
                                     wait_s=settings.batch_wait_ms / 1000, max_queue_tokens=settings.max_queue_tokens,
                                     enabled=settings.batching, on_batch=observe)
                          for p in prompts}

    @property
    def source(self) -> str | None:
        return None if self.encoder.source is None else str(self.encoder.source)

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "owned_by": "embedlab", "task": "embed", "dim": self.encoder.dim,
                "max_tokens": self.max_tokens, "backend": self.spec.backend, "precision": self.spec.precision}

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text with the special tokens, before truncation."""
        ids = self.encoder.tokenizer(texts, add_special_tokens=True, truncation=False, return_attention_mask=False,
                                     return_token_type_ids=False, verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def decode_ids(self, rows: list[list[int]]) -> list[str]:
        """Token-id inputs back to text (they are re-tokenised as the model tokenises text)."""
        return [self.encoder.tokenizer.decode(r, skip_special_tokens=True) for r in rows]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder.tokenizer)

    async def encode(self, texts: list[str], tokens: int, prompt: str | None = None) -> np.ndarray:
        """Unit float32 ``[n, dim]``; ``prompt``: ``"query"`` or ``"document"`` when the model defines it."""
        batcher = self._batchers.get(prompt, self._batchers[None])
        try:
            return await batcher.encode(texts, tokens)
        finally:
            self._metrics.queue_tokens.labels(self.name).set(sum(b.queued_tokens for b in self._batchers.values()))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the model's worker thread (for work that uses the encoder directly: token vectors)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _runner(self, prompt: str | None) -> Callable[[list[str]], np.ndarray]:
        def run(texts: list[str]) -> np.ndarray:
            return self.encoder.encode(texts, prompt_name=prompt, batch_size=None, max_tokens=self._batch_tokens,
                                       show_progress=False)
        return run

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
