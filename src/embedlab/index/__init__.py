"""Collections and search: durable filtered collections, ANN and compressed search, multi-vector search, retrievers.

Sub-packages, one question each: :mod:`.collection` (how a collection is stored), :mod:`.filters` (what a filter
means), :mod:`.search` (how the top k are found: faiss indexes, compressed codes, the filter planner, exact search),
:mod:`.multivector` (MaxSim, MUVERA FDEs and the MUVERA index) and :mod:`.retrievers` (BM25, dense, hybrid fusion,
reranking).
"""

from embedlab.index.collection import MAX_K, MAX_RESULTS, Collection
from embedlab.index.filters import Filter, FilterSyntaxError
from embedlab.index.multivector import Muvera, MuveraIndex, maxsim, maxsim_rerank, maxsim_search
from embedlab.index.retrievers import (BM25, DenseRetriever, HybridRetriever, MaxSimReranker, fuse,
                                       reciprocal_rank_fusion, weighted_score_fusion)
from embedlab.index.search import exact_search

__all__ = ["Collection", "MAX_K", "MAX_RESULTS", "Filter", "FilterSyntaxError", "exact_search", "maxsim", "maxsim_rerank", "maxsim_search",
           "Muvera", "MuveraIndex", "BM25", "DenseRetriever", "HybridRetriever", "MaxSimReranker", "fuse",
           "reciprocal_rank_fusion", "weighted_score_fusion"]
