"""The torch runtime: a transformers ``AutoModel`` with our pooling, differentiable and per layer.

:meth:`TorchRuntime.forward` keeps gradients (training); :meth:`TorchRuntime.embed` and
:meth:`TorchRuntime.token_states` run the same pass under ``torch.inference_mode`` and return float32
numpy arrays. ``layer=L`` returns the hidden state after block ``L`` and stops the forward pass there;
:meth:`TorchRuntime.forward_layers` pools several layers from one pass (2-D Matryoshka training and evaluation).
A ``pooling_mask`` in the features (the padding mask with a prompt's tokens zeroed) replaces the
attention mask for pooling only; a :class:`~embedlab.models.head.Head` (Dense / Normalize modules)
runs on the pooled vectors.
"""

from __future__ import annotations

import hashlib
import json
from typing import ContextManager

import numpy as np
import torch

from embedlab.models.head import Head
from embedlab.models.pooling import Pooling, pool
from embedlab.models.runtime import Backend, Precision
from embedlab.models.runtime.threads import torch_threads


NOT_MODEL_INPUTS = ("special_tokens_mask", "pooling_mask")  # features the encoder adds that the model never sees


def hash_weights(h, weights) -> None:
    """Feed ``(name, tensor)`` pairs, in the order given, to the hashlib object ``h``: each name, then the bytes."""
    with torch.no_grad():
        for name, tensor in weights:
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())


class _StopForward(Exception):
    """Raised by a forward hook to end the pass early, carrying that block's output ``[b, t, d]``."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("stop")
        self.hidden = hidden


def _transformer_blocks(model: torch.nn.Module, n: int) -> torch.nn.ModuleList | None:
    """The ``n`` stacked blocks (``encoder.layer`` for BERT-like models, ``layers`` or ``h`` for decoders), or None."""
    for path in ("encoder.layer", "layers", "h", "transformer.h", "model.layers"):
        obj: object = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n:
            return obj
    return None


class TorchRuntime:
    """Runs a transformers model (``model``, public so training can update it) and pools its token states.

    ``threads`` is the intra-op torch thread count while a run of batches is in :meth:`running`
    (None: torch's own setting). ``head`` (public, trainable like ``model``) maps the pooled vectors to
    the output width :attr:`dim`.
    """

    backend = Backend.TORCH
    precision = Precision.FP32
    per_layer = True

    def __init__(self, model: torch.nn.Module, *, pooling: Pooling, threads: int | None = None,
                 head: Head | None = None) -> None:
        self.model = model
        self.config = model.config
        self.pooling = pooling
        self.threads = threads
        self.head = head
        self.dim = int(model.config.hidden_size) if head is None else head.dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def running(self) -> ContextManager[None]:
        return torch_threads(self.threads)

    # ------------------------------------------------------------------ differentiable path
    def forward(self, features: dict[str, torch.Tensor], layer: int | None = None) -> torch.Tensor:
        """Pooled, unnormalised embeddings ``[b, dim]`` with gradients, from tensors ``[b, t]`` on :attr:`device`."""
        return self.forward_layers(features, (layer or self.num_layers,))[0]

    def forward_layers(self, features: dict[str, torch.Tensor], layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Pooled embeddings ``[b, dim]`` after each block in ``layers`` (1..num_layers), from one forward pass."""
        mask = features.get("pooling_mask", features["attention_mask"])
        pooled = [pool(hidden, mask, self.pooling) for hidden in self.layer_states(features, layers)]
        return pooled if self.head is None else [self.head(p) for p in pooled]

    def hidden_states(self, features: dict[str, torch.Tensor], layer: int | None = None) -> torch.Tensor:
        """Token states ``[b, t, d]`` after block ``layer`` (``None``: the last)."""
        return self.layer_states(features, (layer or self.num_layers,))[0]

    def layer_states(self, features: dict[str, torch.Tensor], layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Token states ``[b, t, d]`` after each block in ``layers``, in that order, from one forward pass that stops
        after the deepest of them (a hook on that block raises with its output), so it costs ``max(layers)`` blocks.
        The last layer is the model's ``last_hidden_state`` (after any final norm)."""
        inputs = {k: v for k, v in features.items() if k not in NOT_MODEL_INPUTS}
        n = self.num_layers
        deepest = max(layers)
        if set(layers) == {n}:
            hidden = self.model(**inputs).last_hidden_state
            return [hidden] * len(layers)
        blocks = _transformer_blocks(self.model, n)
        if blocks is None:  # an architecture whose blocks we cannot find: run every layer
            states = self.model(**inputs, output_hidden_states=True)
            return [states.last_hidden_state if layer == n else states.hidden_states[layer] for layer in layers]
        seen: dict[int, torch.Tensor] = {}

        def keep(index: int):
            def hook(module, args, output):
                seen[index] = output[0] if isinstance(output, tuple) else output
                if index == deepest and deepest < n:
                    raise _StopForward(seen[index])
            return hook

        handles = [blocks[layer - 1].register_forward_hook(keep(layer)) for layer in set(layers) if layer < n]
        try:
            try:
                seen[n] = self.model(**inputs).last_hidden_state
            except _StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [layer for layer in layers if layer not in seen]
        if missing:  # pragma: no cover
            raise RuntimeError(f"TorchRuntime: layers {missing} of {type(self.model).__name__} never ran")
        return [seen[layer] for layer in layers]

    # ------------------------------------------------------------------ inference on numpy batches
    def _tensors(self, features: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        device = self.device
        return {k: torch.from_numpy(v).to(device) for k, v in features.items() if k != "special_tokens_mask"}

    def embed(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Pooled, unnormalised float32 ``[b, dim]`` for one padded batch (int64 arrays ``[b, t]``)."""
        inputs = self._tensors(features)
        with torch.inference_mode():
            return self.forward(inputs, layer).float().cpu().numpy()

    def embed_layers(self, features: dict[str, np.ndarray], layers: tuple[int, ...]) -> list[np.ndarray]:
        """:meth:`embed` at each of ``layers`` (float32 ``[b, dim]`` each), from one pass."""
        inputs = self._tensors(features)
        with torch.inference_mode():
            return [v.float().cpu().numpy() for v in self.forward_layers(inputs, layers)]

    def token_states(self, features: dict[str, np.ndarray], layer: int | None = None) -> np.ndarray:
        """Token states, float32 ``[b, t, d]``, for one padded batch."""
        with torch.inference_mode():
            return self.hidden_states(self._tensors(features), layer).float().cpu().numpy()

    def fingerprint(self, *, max_length: int, do_lower_case: bool, vocab_size: int,
                    include_prompt: bool = True) -> str:
        """sha256 over every weight (by name, the head's too) and ``[pooling, max_length, do_lower_case,
        vocab_size]`` (and ``include_prompt`` when False), 16 hex.

        Embedding caches on disk are keyed by it: changing what goes in re-encodes every cached corpus.
        """
        h = hashlib.sha256()
        weights = sorted(self.model.state_dict().items())
        if self.head is not None:  # prefixed, so a model without a head keeps its fingerprint
            weights += [(f"head.{k}", v) for k, v in sorted(self.head.state_dict().items())]
        hash_weights(h, weights)
        settings = [self.pooling.value, max_length, do_lower_case, vocab_size]
        if not include_prompt:
            settings.append("exclude-prompt")
        h.update(json.dumps(settings).encode())
        return h.hexdigest()[:16]
