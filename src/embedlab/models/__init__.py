"""Text -> vectors: the :class:`Encoder`, pooling, and model resolution (never a download)."""

from embedlab.models.encoder import Encoder
from embedlab.models.pooling import Pooling, pool

__all__ = ["Encoder", "Pooling", "pool"]
