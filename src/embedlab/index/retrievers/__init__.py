"""In-memory retrievers over one corpus: BM25 (:mod:`.bm25`), dense exact search (:mod:`.dense`) and hybrid
fusion of their ranked lists (:mod:`.fusion`); each returns batched :class:`~embedlab.types.Hits` of positions."""

from embedlab.index.retrievers.bm25 import BM25
from embedlab.index.retrievers.dense import DenseRetriever
from embedlab.index.retrievers.fusion import HybridRetriever, fuse, reciprocal_rank_fusion, weighted_score_fusion

__all__ = ["BM25", "DenseRetriever", "HybridRetriever", "fuse", "reciprocal_rank_fusion", "weighted_score_fusion"]
