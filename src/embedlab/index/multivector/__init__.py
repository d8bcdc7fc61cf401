"""Multi-vector (late-interaction) search: exact Chamfer / MaxSim (:mod:`.maxsim`), MUVERA fixed dimensional
encodings (:mod:`.fde`), the one MUVERA stack (:mod:`.index`: :class:`MuveraIndex` and the pipeline it shares
with the collection layer in :mod:`.layer`)."""

from embedlab.index.multivector.fde import Muvera
from embedlab.index.multivector.index import MuveraIndex
from embedlab.index.multivector.maxsim import maxsim, maxsim_rerank, maxsim_search

__all__ = ["Muvera", "MuveraIndex", "maxsim", "maxsim_rerank", "maxsim_search"]
