"""Text -> vectors: the :class:`Encoder`, pooling, and model resolution (never a download)."""

from embedlab.models.encoder import Backend, Encoder, Precision, torch_threads
from embedlab.models.pooling import Pooling, pool

__all__ = ["Backend", "Encoder", "Pooling", "Precision", "pool", "torch_threads"]
