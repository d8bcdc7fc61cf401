"""Indexing and search: exact search today; collections, filters, ANN and multi-vector search build on it."""

from embedlab.index.bm25 import BM25
from embedlab.index.collection import Collection
from embedlab.index.dense import DenseRetriever
from embedlab.index.exact import exact_search
from embedlab.index.fusion import HybridRetriever, reciprocal_rank_fusion, weighted_score_fusion
from embedlab.index.filters import Filter, FilterSyntaxError
from embedlab.index.multivector import maxsim, maxsim_rerank, maxsim_search
from embedlab.index.muvera import Muvera
from embedlab.index.muvera_index import MuveraIndex

__all__ = ["Collection", "Filter", "FilterSyntaxError", "exact_search", "maxsim", "maxsim_rerank", "maxsim_search",
           "Muvera", "MuveraIndex", "BM25", "DenseRetriever", "HybridRetriever", "reciprocal_rank_fusion",
           "weighted_score_fusion"]
