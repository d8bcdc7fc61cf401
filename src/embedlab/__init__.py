"""embedlab: text embeddings for retrieval, end to end.

The top level is small: ``from embedlab import Encoder, Collection``; every stage lives in its namespace
(``embedlab.models``, ``embedlab.compress``, ``embedlab.index``, ``embedlab.eval``). The two names are imported
on first use, so ``import embedlab`` (and ``embedlab --version``) does not load torch or faiss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Encoder", "Collection", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from embedlab.index import Collection
    from embedlab.models import Encoder


def __getattr__(name: str):
    if name == "Encoder":
        from embedlab.models import Encoder

        return Encoder
    if name == "Collection":
        from embedlab.index import Collection

        return Collection
    raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
