"""What a filter means: the :class:`Filter` AST (:mod:`.ast`) and its string syntax (:mod:`.syntax`)."""

from embedlab.index.filters.ast import Filter, as_filter
from embedlab.index.filters.syntax import FilterSyntaxError

__all__ = ["Filter", "FilterSyntaxError", "as_filter"]
