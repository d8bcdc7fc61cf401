"""A LIMIT-style data generator (Weller et al. 2025, "On the Theoretical Limitations of Embedding-Based Retrieval").

Documents read "NAME likes A, B, ..."; each query "Who likes X?" has exactly ``k`` relevant
documents, and the queries' answer sets are all ``C(n_docs, k)`` subsets of the documents, so every
top-k set must be reachable: the combinatorial case where single-vector retrieval breaks down.
The name and attribute vocabularies below are embedlab's own, built procedurally.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from embedlab.errors import InvalidInputError

_SYLLABLES = ("ba", "cor", "da", "el", "fen", "ga", "hal", "ir", "jo", "ka", "lu", "mar", "nel", "o",
              "pra", "quin", "ro", "sa", "tem", "ul", "ve", "wil", "xa", "yo", "zel", "an", "bri", "cy",
              "dor", "es", "fi", "gun", "hes", "is", "kel", "lor", "mi", "nor", "pe", "ras")
_ADJECTIVES = ("Amber", "Velvet", "Copper", "Misty", "Crimson", "Silent", "Golden", "Frozen", "Hidden",
               "Lunar", "Rustic", "Wild", "Tiny", "Ancient", "Electric", "Marble", "Coral", "Smoky",
               "Polished", "Woven", "Spiced", "Northern", "Painted", "Glass", "Paper", "Iron", "Salty",
               "Hollow", "Bright", "Quiet", "Royal", "Striped", "Sunlit", "Twisted", "Wooden", "Jade",
               "Mossy", "Cobalt", "Dusty", "Floral")
_NOUNS = ("Kites", "Lanterns", "Harbors", "Orchards", "Puzzles", "Sonatas", "Canyons", "Teapots",
          "Comets", "Gardens", "Bicycles", "Glaciers", "Riddles", "Violins", "Meadows", "Pebbles",
          "Castles", "Ferns", "Maps", "Owls", "Tulips", "Compasses", "Lagoons", "Marbles", "Quilts",
          "Rockets", "Spices", "Tortoises", "Umbrellas", "Volcanoes", "Whales", "Anchors", "Beetles",
          "Cathedrals", "Dunes", "Fountains", "Geysers", "Hammocks", "Islands", "Jellyfish")


def _names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct "First Last" names from two- and three-syllable words."""
    words = ["".join(p).capitalize() for r in (2, 3) for p in itertools.product(_SYLLABLES, repeat=r)]
    pick = rng.permutation(len(words))
    firsts, lasts = pick[: len(pick) // 2], pick[len(pick) // 2 :]
    out, seen = [], set()
    i = 0
    while len(out) < n:
        name = f"{words[firsts[i % len(firsts)]]} {words[lasts[(i * 7919) % len(lasts)]]}"
        if name not in seen:
            seen.add(name)
            out.append(name)
        i += 1
    return out


def _attributes(n: int, rng: np.random.Generator) -> list[str]:
    combos = [f"{a} {b}" for a in _ADJECTIVES for b in _NOUNS]
    combos += [f"{a} {b} {c}" for a in _ADJECTIVES[:20] for b in _ADJECTIVES[20:] for c in _NOUNS]
    if n > len(combos):
        raise InvalidInputError(f"limit.generate: n_attributes must be <= {len(combos)}, got {n}.")
    return [combos[i] for i in rng.permutation(len(combos))[:n]]


def generate(
    path: str | Path,
    *,
    n_docs: int = 46,
    k: int = 2,
    n_attributes: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a LIMIT-style BEIR folder at ``path`` and return it.

    One query per ``k``-subset of the ``n_docs`` documents (``C(n_docs, k)`` queries, split
    ``test``), each asking for an attribute liked by exactly that subset. ``n_attributes`` (default:
    the number of queries) may be larger: the extra attributes are distractors, each liked by one
    random document and never asked about. Deterministic for a given ``seed``.
    """
    if not isinstance(n_docs, int) or not isinstance(k, int) or k < 1 or n_docs <= k:
        raise InvalidInputError(f"limit.generate: need ints 1 <= k < n_docs, got n_docs={n_docs!r}, k={k!r}.")
    n_queries = math.comb(n_docs, k)
    if n_queries > 200_000:
        raise InvalidInputError(
            f"limit.generate: C(n_docs, k) must be <= 200000 queries, got C({n_docs}, {k}) = {n_queries}. "
            "Lower n_docs or k."
        )
    n_attributes = n_queries if n_attributes is None else n_attributes
    if n_attributes < n_queries:
        raise InvalidInputError(
            f"limit.generate: n_attributes must be >= the number of queries C({n_docs}, {k}) = {n_queries}, got {n_attributes}."
        )
    rng = np.random.default_rng(seed)
    names = _names(n_docs, rng)
    attributes = _attributes(n_attributes, rng)
    likes: list[list[str]] = [[] for _ in range(n_docs)]
    queries, qrels = [], []
    for q, subset in enumerate(itertools.combinations(range(n_docs), k)):
        qid = f"query_{q}"
        queries.append({"_id": qid, "text": f"Who likes {attributes[q]}?"})
        for d in subset:
            likes[d].append(attributes[q])
            qrels.append((qid, names[d]))
    for attr in attributes[n_queries:]:
        likes[int(rng.integers(n_docs))].append(attr)
    path = Path(path)
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    with (path / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for name, liked in zip(names, likes):
            liked = [liked[i] for i in rng.permutation(len(liked))]
            f.write(json.dumps({"_id": name, "title": "", "text": f"{name} likes {', '.join(liked)}."}) + "\n")
    with (path / "queries.jsonl").open("w", encoding="utf-8") as f:
        for row in queries:
            f.write(json.dumps(row) + "\n")
    with (path / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, did in qrels:
            f.write(f"{qid}\t{did}\t1\n")
    return path
