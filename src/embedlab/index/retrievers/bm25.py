"""Okapi BM25 as a retriever: texts in, batched :class:`~embedlab.types.Hits` out.

Scoring is Robertson et al. (1995) BM25 (the ``lucene`` IDF variant by default), computed by the
``bm25s`` library (Lù 2024, "BM25S: Orders of magnitude faster lexical search via eager sparse
scoring"), which precomputes every (token, document) score into a sparse matrix at ``fit`` time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from embedlab.errors import InvalidInputError, NotFittedError
from embedlab.params import check_choice, check_int
from embedlab.topk import topk
from embedlab.types import Hits

METHODS = ("robertson", "lucene", "bm25l", "bm25+", "atire")


class BM25:
    """A BM25 index over one corpus; ``search`` returns document positions (``fit`` order).

    ``k1`` (term-frequency saturation) and ``b`` (length normalisation) are the symbols of
    Robertson et al. (1995), eq. 3 of the Okapi TREC-3 report; ``method`` picks the IDF / TF
    variant of bm25s; ``stopwords`` is ``"en"`` or ``None``. Documents that share no token with a
    query are not returned (their rows are padded with -1 / -inf), so ``Hits`` never holds a
    score-0 guess.
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, method: str = "lucene", stopwords: str | None = "en") -> None:
        check_choice(method, METHODS, "BM25", "method")
        if not k1 >= 0:
            raise InvalidInputError(f"BM25: k1 must be >= 0, got {k1!r}.")
        if not 0 <= b <= 1:
            raise InvalidInputError(f"BM25: b must be in [0, 1], got {b!r}.")
        check_choice(stopwords, ("en", None), "BM25", "stopwords")
        self.k1, self.b, self.method, self.stopwords = k1, b, method, stopwords
        self.index_ = None
        self.n_documents_ = 0

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(texts, stopwords=self.stopwords, return_ids=False, show_progress=False)

    def fit(self, documents: Sequence[str]) -> "BM25":
        """Index ``documents`` (a list of strings); returns ``self``."""
        import bm25s

        documents = _check_texts(documents, "BM25.fit", "documents")
        if not documents:
            raise InvalidInputError("BM25.fit: documents must hold at least one text, got none.")
        index = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        index.index(self._tokenize(documents), show_progress=False)
        self.index_, self.n_documents_ = index, len(documents)
        return self

    def search(self, queries: Sequence[str], k: int) -> Hits:
        """Top-``k`` documents per query: ``ids`` int64 ``[nq, k]`` (positions, -1 padded) and
        ``scores`` float32 ``[nq, k]`` (BM25, ``-inf`` padded), best first, ties by lower position."""
        if self.index_ is None:
            raise NotFittedError("BM25.search: the index is empty. Call fit(documents) first.")
        queries = _check_texts(queries, "BM25.search", "queries")
        k = check_int(k, "BM25.search", "k")
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if not queries:
            return Hits(ids, scores)
        vocab = self.index_.vocab_dict
        tokens = [[t for t in q if t in vocab] for q in self._tokenize(queries)]
        for i, toks in enumerate(tokens):
            if not toks:
                continue
            doc_scores = self.index_.get_scores(toks)  # float [n_documents]; 0 where no query token occurs
            scores[i], ids[i] = (a[0] for a in topk(np.where(doc_scores > 0, doc_scores, -np.inf)[None], k))
        return Hits(ids, scores)


def _check_texts(texts, owner: str, param: str) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError(f"{owner}: {param} must be a list of strings, got {type(texts).__name__}. Wrap one text in a list.")
    return list(texts)
