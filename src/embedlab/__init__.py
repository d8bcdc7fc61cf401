"""embedlab: text embeddings for retrieval, end to end.

The top level is small: ``from embedlab import Encoder``; every stage lives in its namespace
(``embedlab.models``, ``embedlab.eval``, ``embedlab.index``, ...). Imports are lazy, so
``import embedlab`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Encoder", "Collection", "__version__"]

_LAZY = {"Encoder": "embedlab.models", "Collection": "embedlab.index"}

if TYPE_CHECKING:  # pragma: no cover
    from embedlab.models import Encoder


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
