"""In-memory retrievers over one corpus: BM25 (:mod:`.bm25`), dense exact search (:mod:`.dense`) and hybrid
fusion of their ranked lists (:mod:`.fusion`) and second-stage reranking (:mod:`.rerank`); each returns batched :class:`~embedlab.types.Hits` of positions."""

from embedlab.index.retrievers.bm25 import BM25
from embedlab.index.retrievers.dense import DenseRetriever
from embedlab.index.retrievers.fusion import HybridRetriever, fuse, reciprocal_rank_fusion, weighted_score_fusion
from embedlab.index.retrievers.rerank import MaxSimReranker

__all__ = ["BM25", "DenseRetriever", "HybridRetriever", "MaxSimReranker", "fuse", "reciprocal_rank_fusion",
           "weighted_score_fusion"]
