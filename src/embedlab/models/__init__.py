"""Text -> vectors: the :class:`Encoder` over its runtimes (torch, ONNX), pooling, and model resolution
(never a download); (query, document) -> score: the :class:`CrossEncoder` (a reranker)."""

from embedlab.models.cross_encoder import CrossEncoder
from embedlab.models.encoder import Encoder
from embedlab.models.pooling import Pooling, pool
from embedlab.models.runtime import Backend, Precision
from embedlab.models.runtime.threads import torch_threads

__all__ = ["Backend", "CrossEncoder", "Encoder", "Pooling", "Precision", "pool", "torch_threads"]
