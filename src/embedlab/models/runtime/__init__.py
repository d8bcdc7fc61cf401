"""How one tokenised batch is run: the torch runtime (differentiable, per layer) and ONNX Runtime.

A runtime takes one padded batch of model inputs (int64 arrays ``[b, t]``: ``input_ids``, ``attention_mask``,
maybe ``token_type_ids``) and returns float32 arrays: the pooled vectors ``[b, d]`` or the token states
``[b, t, d]``. Everything about texts (prompts, tokenising, batching, truncation, normalisation, ``dim``
prefixes, progress) lives once above the runtimes, in :class:`embedlab.models.Encoder`. Pooling is a
setting of the runtime because the ONNX graph has it traced in; both runtimes apply the one
:func:`embedlab.models.pooling.pool`.

The two runtimes live in :mod:`embedlab.models.runtime.torch` and :mod:`embedlab.models.runtime.onnx`
(imported by the encoder on demand, so this package stays free of torch and ONNX Runtime).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ContextManager, Protocol

import numpy as np

from embedlab.models.pooling import Pooling


class Backend(str, Enum):
    """Which runtime executes the encoder."""

    TORCH = "torch"
    """The transformers model in PyTorch: every option, gradients through :meth:`Encoder.forward`."""
    ONNX = "onnx"
    """The backbone and pooling exported to ONNX and run by ONNX Runtime (fast CPU inference)."""


class Precision(str, Enum):
    """Numeric precision of the encoder weights."""

    FP32 = "fp32"
    INT8 = "int8"
    """Dynamic int8 quantisation of the linear layers (ONNX backend only)."""


class Runtime(Protocol):
    """What :class:`~embedlab.models.Encoder` needs from a runtime: one padded batch in, float32 arrays out."""

    backend: Backend
    precision: Precision
    pooling: Pooling
    per_layer: bool
    """Whether ``layer=L`` (the hidden state after block ``L``) is honoured; a runtime without it takes only None."""
    config: Any
    """The transformers config: ``hidden_size`` (d) and ``num_hidden_layers``."""
    dim: int
    """Width of :meth:`embed`'s vectors: a Dense head's output width, else ``hidden_size`` (the encoder falls
    back to ``hidden_size`` for a runtime without it)."""
    threads: int | None

    @property
    def device(self) -> Any: ...

    def running(self) -> ContextManager[None]:
        """The settings a run of batches needs (entered once around all of an ``encode`` call's batches)."""

    def embed(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Pooled, unnormalised float32 ``[b, dim]`` for one padded batch (int64 arrays ``[b, t]``); an optional
        ``pooling_mask`` feature replaces the attention mask for the pooling only."""

    def token_states(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Token states, float32 ``[b, t, d]``, for one padded batch."""

    def fingerprint(self, *, max_length: int, do_lower_case: bool, vocab_size: int,
                    include_prompt: bool = True) -> str:
        """A hex digest of the weights and these text settings; it keys embedding caches on disk (the encoder
        passes ``include_prompt`` only when False)."""


__all__ = ["Backend", "Precision", "Runtime"]
