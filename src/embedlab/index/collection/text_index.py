"""The BM25 text index of a collection (``Collection.create(..., text_index=True)``): the sparse side of hybrid search.

Scoring is Okapi BM25 (Robertson et al. 1995) with Lucene's IDF, ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``,
and the term-frequency part ``tf / (tf + k1 * (1 - b + b * dl / avgdl))`` (the ``lucene`` method of bm25s; Kamphuis
et al. 2020, "Which BM25 Do You Mean?"), tokenised by ``bm25s.tokenize`` (lower-cased words of two or more
characters, English stopwords removed), so a collection's sparse scores equal a fresh
:class:`~embedlab.index.retrievers.bm25.BM25` fitted on its live texts. Unlike bm25s, which precomputes every
(token, document) score at fit time, the statistics ``N``, ``avgdl`` and ``df`` are taken over the *live* rows that
have a text at query time, so adds, upserts and deletes never need a rebuild: each write appends the new rows'
postings, and a delete only changes the live mask (the statistics are recomputed once per state, ``O(postings)``).

Durability: the texts are stored in the collection's SQLite database with their rows (the source of truth, written
in the same transaction as the vectors), and this index is derived from them: built on first use after an open,
by tokenising the stored texts (about 1 s per 100k short texts here), then kept current by the writes. A crash
therefore never leaves it behind the data, and there is no file of its own to damage.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from embedlab.topk import topk

K1, B = 1.5, 0.75


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """bm25s' tokeniser with English stopwords (the same as :class:`~embedlab.index.retrievers.bm25.BM25`)."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


class TextIndex:
    """Postings ``token -> (rows, term frequencies)`` over rows ``0..n-1`` of one collection generation.

    ``add(start, texts)`` appends rows ``start..start+len(texts)-1`` (``None`` entries: rows without a text, never
    returned by :meth:`search`); ``search`` ranks the rows of ``allowed`` (bool ``[n]``: live rows passing the
    filter) and takes the statistics over ``live`` (bool ``[n]``).
    """

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.rows = 0  # rows covered
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (tokens, rows, tf) not merged yet
        self._lengths = [np.zeros(0, np.int32)]  # token count per row (0: no text, or no indexable word)
        self._has_text = [np.zeros(0, bool)]
        self._merged = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64))  # rows, tf, offsets
        self._stats_key: object = None
        self._stats: tuple = ()

    def add(self, start: int, texts: Sequence[str | None]) -> None:
        """Index the texts of rows ``start..`` (``start`` must be the rows covered so far)."""
        assert start == self.rows, (start, self.rows)
        has = np.array([t is not None for t in texts], dtype=bool)
        toks = tokenize([t for t in texts if t is not None]) if has.any() else []
        lengths = np.zeros(len(texts), np.int32)
        lengths[has] = [len(t) for t in toks]
        tokens, rows, tfs = [], [], []
        for row, words in zip(np.flatnonzero(has) + start, toks):
            counts: dict[int, int] = {}
            for w in words:
                tid = self.vocab.setdefault(w, len(self.vocab))
                counts[tid] = counts.get(tid, 0) + 1
            tokens.extend(counts)
            tfs.extend(counts.values())
            rows.extend([row] * len(counts))
        self._pending.append((np.asarray(tokens, np.int32), np.asarray(rows, np.int32), np.asarray(tfs, np.int32)))
        self._lengths.append(lengths)
        self._has_text.append(has)
        self.rows += len(texts)

    def extend(self, n: int, read_texts: Callable[[int, int], dict[int, str | None]], chunk: int = 50_000) -> None:
        """Catch up to ``n`` rows, reading the missing rows' texts with ``read_texts(start, end) -> {row: text}``."""
        while self.rows < n:
            start, end = self.rows, min(n, self.rows + chunk)
            got = read_texts(start, end)
            self.add(start, [got.get(r) for r in range(start, end)])

    def has_text(self, rows: np.ndarray) -> np.ndarray:
        """bool, like ``rows``: which rows have a stored text (``-1`` padding: ``True``)."""
        self._merge()
        out = np.ones(rows.shape, bool)
        valid = rows >= 0
        out[valid] = self._has_text[0][rows[valid]]
        return out

    def _merge(self) -> None:
        if not self._pending:
            return
        rows0, tf0, offsets0 = self._merged
        tok0 = np.repeat(np.arange(len(offsets0) - 1, dtype=np.int32), np.diff(offsets0))
        tokens = np.concatenate([tok0, *(p[0] for p in self._pending)])
        rows = np.concatenate([rows0, *(p[1] for p in self._pending)])
        tfs = np.concatenate([tf0, *(p[2] for p in self._pending)])
        order = np.lexsort((rows, tokens))
        offsets = np.zeros(len(self.vocab) + 1, np.int64)
        np.cumsum(np.bincount(tokens, minlength=len(self.vocab)), out=offsets[1:])
        self._merged = (rows[order], tfs[order], offsets)
        self._pending = []
        self._lengths = [np.concatenate(self._lengths)]
        self._has_text = [np.concatenate(self._has_text)]

    def _statistics(self, live: np.ndarray, key: object) -> tuple[np.ndarray, int, np.ndarray]:
        """``(df float64 [vocab], N, norm float32 [n])`` over the live rows with a text; ``norm`` is
        ``k1 * (1 - b + b * dl / avgdl)``."""
        if self._stats_key != (key, self.rows):
            rows, _, offsets = self._merged
            counted = live[: self.rows] & self._has_text[0]
            n_docs = int(counted.sum())
            lengths = self._lengths[0]
            avgdl = float(lengths[counted].sum()) / n_docs if n_docs else 1.0
            tok = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
            df = np.bincount(tok[counted[rows]], minlength=len(offsets) - 1).astype(np.float64)
            norm = (K1 * (1 - B + B * lengths / max(avgdl, 1e-9))).astype(np.float32)
            self._stats, self._stats_key = (df, n_docs, norm), (key, self.rows)
        return self._stats

    def search(self, queries: Sequence[str], k: int, allowed: np.ndarray, live: np.ndarray,
               key: object) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query by BM25: ``(scores float32 [nq, k], rows int64 [nq, k])``, best first, ties by
        lower row; rows sharing no word with the query are not returned (``-inf`` / ``-1`` padding). ``allowed`` and
        ``live``: bool ``[n]``; ``key`` identifies the live state (the statistics are cached per key)."""
        self._merge()
        n = self.rows
        scores = np.full((len(queries), k), -np.inf, np.float32)
        out = np.full((len(queries), k), -1, np.int64)
        if n == 0:
            return scores, out
        rows, tfs, offsets = self._merged
        df, n_docs, norm = self._statistics(live, key)
        for i, words in enumerate(tokenize(queries)):
            acc = np.zeros(n, np.float32)
            for w in words:
                t = self.vocab.get(w)
                if t is None or df[t] == 0:
                    continue
                r, tf = rows[offsets[t] : offsets[t + 1]], tfs[offsets[t] : offsets[t + 1]]
                idf = np.log1p((n_docs - df[t] + 0.5) / (df[t] + 0.5))
                acc[r] += (idf * tf / (tf + norm[r])).astype(np.float32)
            acc[~allowed[:n] | (acc <= 0)] = -np.inf
            scores[i], out[i] = (a[0] for a in topk(acc[None], k))
        out[~np.isfinite(scores)] = -1
        return scores, out

    def compact(self, keep: np.ndarray) -> "TextIndex":
        """The index of the next generation, whose rows are ``keep`` (old rows, ascending) renumbered ``0..m-1``."""
        self._merge()
        new = TextIndex()
        new.vocab = dict(self.vocab)
        new_row = np.full(self.rows, -1, np.int64)
        new_row[keep] = np.arange(len(keep))
        rows, tfs, offsets = self._merged
        tok = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
        kept = new_row[rows] >= 0
        new._pending = [(tok[kept], new_row[rows[kept]].astype(np.int32), tfs[kept])]
        new._lengths = [self._lengths[0][keep]]
        new._has_text = [self._has_text[0][keep]]
        new.rows = len(keep)
        return new
