"""Corpus encoding on Ray Data: encoder actors that load the model once per pass, ``map_batches`` over blocks.

Ray (``ray[data]``) is an optional dependency. ``RayEncoder(encoder, "local")`` starts a local cluster pinned to
loopback (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before ``ray.init``; a small object store); any other string is
the address of a running cluster (``ray.init(address=...)``). Each actor takes ``num_cpus=0.5`` so that the read
stage keeps a CPU on a 2-core machine (``concurrency=2`` with whole CPUs deadlocks there) and runs torch with one
thread. The model travels as what loads it (its folder, backend and precision), never as a pickled object.
"""

from __future__ import annotations

import os

import numpy as np

from embedlab.errors import InvalidInputError, UnsupportedError

WINDOW_SHARDS = 16  # shards per Ray Data pass: bounded memory, one actor start-up per window


def start_local(num_cpus: int | None = None) -> None:
    """A local Ray cluster on loopback only, with a 512 MiB object store. Ray reads
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (which pins it to loopback) when it is imported, so this sets it first;
    if Ray was imported before without it and binds elsewhere, the cluster is stopped and an error says so."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray binds to eth0, not loopback
    import ray

    ray.init(num_cpus=num_cpus or os.cpu_count() or 2, object_store_memory=512 * 2**20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
    if addresses != {"127.0.0.1"}:
        ray.shutdown()
        raise UnsupportedError(f"encode_corpus: the local Ray cluster must bind to 127.0.0.1, got {sorted(addresses)}. "
                               "Set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment before Ray is imported.")


class _EncodeBatches:
    """The Ray Data UDF: one encoder per actor, refused if it is not the driver's model (same fingerprint)."""

    def __init__(self, source: str, backend: str, precision: str, batch_size: int, max_tokens: int | None,
                 fingerprint: str) -> None:
        from embedlab.models import Encoder

        self.encoder = Encoder.load(source, backend=backend, precision=precision, threads=1)
        if self.encoder.fingerprint != fingerprint:
            raise InvalidInputError(f"encode_corpus: the Ray workers loaded {source} as model "
                                    f"{self.encoder.fingerprint}, got a driver encoder {fingerprint}. Save the "
                                    "encoder (Encoder.save) and encode with the saved folder.")
        self.batch_size, self.max_tokens = batch_size, max_tokens

    def __call__(self, batch: dict) -> dict:
        vectors = self.encoder.encode(list(batch["text"]), batch_size=self.batch_size, max_tokens=self.max_tokens,
                                      show_progress=False)
        return {"i": batch["i"], "vector": vectors}


class RayEncoder:
    """``encode(texts) -> float32 [n, dim]`` on Ray Data with ``workers`` encoder actors."""

    window = WINDOW_SHARDS

    def __init__(self, encoder, address: str, *, batch_size: int = 64, max_tokens: int | None = None,
                 workers: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise InvalidInputError("encode_corpus: ray= needs Ray Data: pip install 'ray[data]'.") from None
        self._ray = ray
        self._spec = (str(encoder.source), encoder.backend.value, encoder.precision.value, batch_size, max_tokens,
                      encoder.fingerprint)
        self.workers = workers
        self._owns = not ray.is_initialized()
        if self._owns:
            if address == "local":
                start_local()
            else:
                ray.init(address=address, log_to_driver=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # texts in order of length: each actor's batch then holds texts of similar length, padded as little as the
        # in-process encoder pads a whole shard it sorts itself (a batch of mixed lengths pads to its longest)
        by_length = np.argsort(np.fromiter(map(len, texts), np.int64, len(texts)), kind="stable")
        ds = ray.data.from_items([{"i": int(i), "text": texts[i]} for i in by_length],
                                 override_num_blocks=max(self.workers * 4, 1))
        out = ds.map_batches(_EncodeBatches, fn_constructor_args=self._spec, batch_size=256, batch_format="numpy",
                             concurrency=self.workers, num_cpus=0.5)
        order, vectors = [], []
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            order.append(batch["i"])
            vectors.append(batch["vector"])
        order = np.concatenate(order)
        result = np.empty((len(texts), vectors[0].shape[1]), dtype=np.float32)
        result[order] = np.concatenate(vectors)
        return result

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
