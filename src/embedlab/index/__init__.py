"""Indexing and search: exact search today; collections, filters, ANN and multi-vector search build on it."""

from embedlab.index.collection import Collection
from embedlab.index.exact import exact_search
from embedlab.index.filters import Filter, FilterSyntaxError

__all__ = ["Collection", "Filter", "FilterSyntaxError", "exact_search"]
