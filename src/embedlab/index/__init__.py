"""Indexing and search: exact search today; collections, filters, ANN and multi-vector search build on it."""

from embedlab.index.exact import exact_search

__all__ = ["exact_search"]
