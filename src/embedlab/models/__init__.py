"""Text -> vectors: the :class:`Encoder` over its runtimes (torch, ONNX), pooling, and model resolution
(never a download)."""

from embedlab.models.encoder import Encoder
from embedlab.models.pooling import Pooling, pool
from embedlab.models.runtime import Backend, Precision
from embedlab.models.runtime.threads import torch_threads

__all__ = ["Backend", "Encoder", "Pooling", "Precision", "pool", "torch_threads"]
