"""What a filter means: the :class:`Filter` AST (:mod:`.ast`) and its string syntax (:mod:`.syntax`), with its
documented limits (:data:`MAX_FILTER_DEPTH`, :data:`MAX_FILTER_TERMS`, :data:`MAX_FILTER_CHARS`)."""

from embedlab.index.filters.ast import Filter, as_filter
from embedlab.index.filters.syntax import MAX_FILTER_CHARS, MAX_FILTER_DEPTH, MAX_FILTER_TERMS, FilterSyntaxError

__all__ = ["MAX_FILTER_CHARS", "MAX_FILTER_DEPTH", "MAX_FILTER_TERMS", "Filter", "FilterSyntaxError", "as_filter"]
