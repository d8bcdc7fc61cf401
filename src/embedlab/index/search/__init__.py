"""How the top k are found: faiss indexes (:mod:`.faiss_backends`), the compressed code scan with rescoring
(:mod:`.compressed`), the index a manifest names (:mod:`.kinds`), the filter planner (:mod:`.planner`) and the
exact search every approximate path is tested against (:mod:`.exact`)."""

from embedlab.index.search.exact import exact_search

__all__ = ["exact_search"]
