"""What a server runs: its data folder, the models it serves, its API keys and its limits.

:class:`Settings` is a plain frozen dataclass (no environment is read here; the CLI and
:func:`~embedlab.serve.auth.load_keys` do that), so a test builds one in a line and two apps in one
process never share state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.errors import InvalidInputError
from embedlab.params import check_choice, check_int

LOOPBACK = ("127.0.0.1", "::1", "localhost")
TRUNCATE = ("end", "error")


@dataclass(frozen=True)
class ModelSpec:
    """One served model: ``path`` (a folder, or ``None`` for the bundled all-MiniLM-L6-v2), its ``backend``
    (``torch`` | ``onnx``) and ``precision`` (``fp32`` | ``int8``, ONNX only)."""

    path: str | None = None
    backend: str = "torch"
    precision: str = "fp32"

    @classmethod
    def parse(cls, text: str, option: str = "--model") -> tuple[str, "ModelSpec"]:
        """``"name=PATH[,backend=onnx][,precision=int8]"`` -> ``(name, spec)``; ``PATH`` may be ``default``;
        ``option`` names the command-line option in errors."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise InvalidInputError(f"serve: {option} must be NAME=PATH[,backend=B][,precision=P], got {text!r}. "
                                    f"Example: {option} minilm=default,backend=onnx")
        path, *options = rest.split(",")
        values = {}
        for item in options:
            key, sep, value = item.partition("=")
            if not sep or key not in ("backend", "precision"):
                raise InvalidInputError(f"serve: {option} options must be backend=... or precision=..., got "
                                        f"{item!r} in {text!r}.")
            values[key] = value
        spec = cls(None if path == "default" else path, **values)
        check_choice(spec.backend, ("torch", "onnx"), "serve", "backend")
        check_choice(spec.precision, ("fp32", "int8"), "serve", "precision")
        return name, spec


@dataclass(frozen=True)
class Settings:
    """Everything :func:`~embedlab.serve.create_app` needs.

    ``data``: the folder holding one sub-folder per collection; ``models``: served name -> :class:`ModelSpec`
    (the first is the default model: it encodes texts when a request names none); ``rerankers``: served name ->
    :class:`ModelSpec` of a cross-encoder folder (``fp32``) that a search may name in ``rerank``; ``keys``: API keys from
    :func:`~embedlab.serve.auth.load_keys` (empty: no auth, loopback only).

    Limits: ``max_in_flight`` requests at once (then 503 with ``Retry-After``), ``max_body_bytes`` per request body
    (413), ``max_inputs`` texts / ids / queries per request (413),
    ``max_request_tokens`` tokens per embedding request (413), ``max_rerank_pairs`` (query, candidate) pairs a
    reranked search may score (queries x ``rerank_candidates``; 413); ``truncate``: ``"end"`` cuts texts longer than the
    model's limit and reports them in the response, ``"error"`` answers 400.

    Dynamic batching: requests queue per model and are gathered into micro-batches of at most ``batch_tokens``
    tokens, waiting ``batch_wait_ms`` for more once the first has arrived when the last batch had company (``batching=False``: one request
    per forward pass); at most ``max_queue_tokens`` tokens may wait (else 503 with ``Retry-After``);
    ``timeout_s``: the longest an encoding or search may wait and run (504).
    """

    data: Path
    models: dict[str, ModelSpec] = field(default_factory=lambda: {"all-MiniLM-L6-v2": ModelSpec()})
    rerankers: dict[str, ModelSpec] = field(default_factory=dict)
    keys: tuple = ()
    max_in_flight: int = 512
    max_body_bytes: int = 8 * 2**20
    max_inputs: int = 2048
    max_request_tokens: int = 131_072
    max_rerank_pairs: int = 4096
    truncate: str = "end"
    batching: bool = True
    batch_tokens: int = 4096
    batch_wait_ms: float = 2.0
    max_queue_tokens: int = 262_144
    timeout_s: float = 60.0
    threads: int | None = None

    def __post_init__(self) -> None:
        owner = "Settings"
        object.__setattr__(self, "data", Path(self.data))
        if not self.models:
            raise InvalidInputError(f"{owner}: models must name at least one model, got none. Use --model NAME=PATH.")
        check_choice(self.truncate, TRUNCATE, owner, "truncate")
        for name in ("max_in_flight", "max_body_bytes", "max_inputs", "max_request_tokens", "max_rerank_pairs",
                     "batch_tokens", "max_queue_tokens"):
            check_int(getattr(self, name), owner, name)
        for name, spec in self.rerankers.items():
            if spec.precision != "fp32":
                raise InvalidInputError(f"{owner}: reranker {name!r} must run in fp32 (a cross-encoder has no int8 "
                                        f"build), got precision={spec.precision!r}. Drop precision=.")
        if not (self.batch_wait_ms >= 0 and self.timeout_s > 0):
            raise InvalidInputError(f"{owner}: batch_wait_ms must be >= 0 and timeout_s > 0, got "
                                    f"{self.batch_wait_ms} and {self.timeout_s}.")

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)
