"""The one faiss bitmap selector: allowed rows as an ``IDSelectorBitmap`` that owns its packed bitmap.

faiss's ``IDSelectorBitmap(n, swig_ptr(bits))`` keeps a raw pointer to ``bits``: if that array is freed
while faiss still holds the selector, the filter silently reads garbage and leaks other rows. This class
holds both, so a search is safe for as long as the :class:`BitmapSelector` is alive. It lives at the top
level because both ``compress/`` (Hamming search over a subset) and ``index/`` (filtered ANN) need it.
"""

from __future__ import annotations

import faiss
import numpy as np


class BitmapSelector:
    """Allowed rows ``mask`` (bool ``[n]``) as a faiss selector; pass :meth:`params` to ``index.search``."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = np.ascontiguousarray(mask, dtype=bool)
        self.count = int(self.mask.sum())
        self._bits = np.packbits(self.mask, bitorder="little")  # kept alive with the selector (module docstring)
        self.selector = faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(self._bits))

    @classmethod
    def of_rows(cls, rows: np.ndarray, n: int) -> "BitmapSelector":
        """Selector allowing the positions ``rows`` (int ``[m]``) out of ``n``."""
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        return cls(mask)

    @property
    def rows(self) -> np.ndarray:
        """The allowed positions, int64 ``[count]`` ascending."""
        return np.flatnonzero(self.mask)

    def params(self, kind=faiss.SearchParameters, **fields):
        """``kind(sel=self.selector, **fields)``, e.g. ``params(faiss.SearchParametersHNSW, efSearch=64)``."""
        return kind(sel=self.selector, **fields)
