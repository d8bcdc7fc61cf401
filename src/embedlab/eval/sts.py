"""Semantic textual similarity: Spearman correlation of cosine similarity with gold scores."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr

from embedlab.errors import InvalidInputError
from embedlab.eval.data import StsPair


def evaluate_sts(encoder, pairs: list[StsPair], *, batch_size: int = 64, **encode_options) -> dict[str, float]:
    """Encode both sides of ``pairs`` (each distinct sentence once) and correlate cosine with gold.

    Returns ``{"spearman", "pearson", "n"}`` with correlations on the 0-1 scale (×100 for the
    MTEB-style figure). ``encode_options`` go to ``encoder.encode`` (``dim``, ``layers``, ``prompt``).
    """
    if len(pairs) < 2:
        raise InvalidInputError(f"evaluate_sts: pairs must hold at least 2 pairs, got {len(pairs)}.")
    sentences = sorted({p.sentence1 for p in pairs} | {p.sentence2 for p in pairs})
    row = {s: i for i, s in enumerate(sentences)}
    emb = encoder.encode(sentences, batch_size=batch_size, normalize=True, **encode_options)
    a = emb[[row[p.sentence1] for p in pairs]]
    b = emb[[row[p.sentence2] for p in pairs]]
    cosine = (a * b).sum(1)
    gold = np.array([p.score for p in pairs])
    return {
        "spearman": float(spearmanr(cosine, gold).statistic),
        "pearson": float(pearsonr(cosine, gold).statistic),
        "n": len(pairs),
    }
