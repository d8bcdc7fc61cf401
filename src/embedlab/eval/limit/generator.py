"""A LIMIT data generator (Weller et al. 2025, "On the Theoretical Limitations of Embedding-Based
Retrieval", section 5.2) and a check of its statistics.

Documents read "NAME likes A, B, ..."; each query "Who likes X?" has exactly ``k`` relevant
documents. The relevant sets are ``k``-subsets of a *core* of documents: all ``C(core, k)`` of them
(the small mode: 46 documents, 1035 queries), or a random sample of ``n_queries`` of them (the
paper's LIMIT: 1,000 of the 1,035 pairs of a 46-document core). Every document is then padded with
distractor attributes, never asked about, until all documents like the same number of things; the
full-size mode adds ``n_docs - core`` documents that are relevant to no query (LIMIT: 50,000 in all).

Attributes are coined compound words ("Moonberries", "Frostlanterns"; 1,980 of them) so that, as with the paper's curated item list,
a query's attribute occurs in its relevant documents only: lexical retrieval can solve the task, and
what remains hard is purely the number of top-k combinations. ``vocabulary="compositional"`` builds
two- and three-word attributes from shared adjectives and nouns instead (a harder lexical task).
The word lists are embedlab's own, built procedurally; nothing is downloaded.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.params import check_int

FULL = {"n_docs": 50_000, "core": 46, "n_queries": 1000, "k": 2, "n_attributes": 1850}
"""The paper's LIMIT: 50k documents, 1,000 queries, k=2, a 46-document core, 1,850 attributes."""
VOCABULARIES = ("coined", "compositional")
MAX_QUERIES = 200_000

_SYLLABLES = ("ba", "cor", "da", "el", "fen", "ga", "hal", "ir", "jo", "ka", "lu", "mar", "nel", "o",
              "pra", "quin", "ro", "sa", "tem", "ul", "ve", "wil", "xa", "yo", "zel", "an", "bri", "cy",
              "dor", "es", "fi", "gun", "hes", "is", "kel", "lor", "mi", "nor", "pe", "ras")
_ITEM_HEADS = ("moon", "star", "sun", "river", "stone", "fire", "snow", "rain", "cloud", "leaf", "sea", "sand",
               "storm", "frost", "dawn", "dusk", "honey", "silver", "gold", "iron", "glass", "paper", "salt",
               "pine", "oak", "maple", "rose", "lily", "mint", "ginger", "pepper", "lemon", "coral", "amber",
               "cedar", "willow", "thunder", "shadow", "crystal", "meadow", "harbor", "canyon", "valley", "ember",
               "feather")
_ITEM_TAILS = ("berries", "fish", "birds", "flowers", "cakes", "boats", "songs", "games", "bells", "lamps",
               "kites", "shells", "drums", "pies", "teas", "ferns", "moths", "beetles", "rings", "clocks", "maps",
               "hats", "quilts", "puzzles", "lanterns", "candles", "whistles", "marbles", "ribbons", "buns",
               "frogs", "owls", "wolves", "foxes", "deer", "beans", "nuts", "melons", "plums", "cookies", "soups",
               "sails", "wheels", "tiles")
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
        name = f"{words[firsts[i % len(firsts)]]} {words[lasts[(i * 7919 + i // len(firsts)) % len(lasts)]]}"
        if name not in seen:
            seen.add(name)
            out.append(name)
        i += 1
    return out


def _vocabulary(style: str) -> list[str]:
    if style == "coined":
        return [f"{head}{tail}".capitalize() for head in _ITEM_HEADS for tail in _ITEM_TAILS]
    combos = [f"{a} {b}" for a in _ADJECTIVES for b in _NOUNS]
    return combos + [f"{a} {b} {c}" for a in _ADJECTIVES[:20] for b in _ADJECTIVES[20:] for c in _NOUNS]


def _attributes(n: int, rng: np.random.Generator, style: str) -> list[str]:
    pool = _vocabulary(style)
    if n > len(pool):
        raise InvalidInputError(
            f"limit.generate: n_attributes must be <= {len(pool)} for vocabulary={style!r}, got {n}. Lower n_attributes."
        )
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def generate(
    path: str | Path,
    *,
    n_docs: int = 46,
    k: int = 2,
    core: int | None = None,
    n_queries: int | None = None,
    n_attributes: int | None = None,
    attributes_per_doc: int | None = None,
    vocabulary: str = "coined",
    seed: int = 0,
) -> Path:
    """Write a LIMIT-style BEIR folder at ``path`` (``corpus.jsonl``, ``queries.jsonl``,
    ``qrels/test.tsv``) and return it. Deterministic for a given ``seed``.

    ``core`` (default ``n_docs``) documents carry the relevant sets: all ``C(core, k)`` ``k``-subsets,
    or a random ``n_queries`` of them. The other ``n_docs - core`` documents are relevant to nothing.
    Every document likes ``attributes_per_doc`` things (default: the most any core document needs);
    ``n_attributes`` (default: queries + ``attributes_per_doc``) is the vocabulary size, the
    attributes beyond the queries' being distractors. The paper's full set is ``generate(path, **FULL)``.
    """
    n_docs, k, core, n_queries = _check_sizes(n_docs, k, core, n_queries)
    if vocabulary not in VOCABULARIES:
        raise InvalidInputError(f"limit.generate: vocabulary must be one of {list(VOCABULARIES)}, got {vocabulary!r}.")
    rng = np.random.default_rng(seed)
    subsets = list(itertools.combinations(range(core), k))
    if n_queries < len(subsets):
        subsets = [subsets[i] for i in np.sort(rng.choice(len(subsets), n_queries, replace=False))]
    degree = np.bincount(np.asarray(subsets).ravel(), minlength=core)
    per_doc = int(degree.max()) if attributes_per_doc is None else attributes_per_doc
    if not isinstance(per_doc, int) or per_doc < degree.max():
        raise InvalidInputError(
            f"limit.generate: attributes_per_doc must be an int >= {int(degree.max())} (the most queries one core "
            f"document answers), got {attributes_per_doc!r}."
        )
    n_attributes = n_queries + max(per_doc, 1) if n_attributes is None else n_attributes
    n_distractors = n_attributes - n_queries if isinstance(n_attributes, int) else -1
    if n_distractors < per_doc - int(degree.min()) or (n_docs > core and n_distractors < per_doc):
        need = n_queries + (per_doc if n_docs > core else per_doc - int(degree.min()))
        raise InvalidInputError(
            f"limit.generate: n_attributes must be >= {need} (the {n_queries} query attributes plus enough "
            f"distractors to pad every document to {per_doc}), got {n_attributes!r}."
        )
    names = _names(n_docs, rng)
    attributes = _attributes(n_attributes, rng, vocabulary)
    distractors = np.arange(n_queries, n_attributes)
    likes: list[list[int]] = [[] for _ in range(n_docs)]
    for q, subset in enumerate(subsets):
        for d in subset:
            likes[d].append(q)
    path = Path(path)
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    with (path / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in range(n_docs):
            pad = rng.choice(distractors, per_doc - len(likes[d]), replace=False) if per_doc > len(likes[d]) else []
            liked = [attributes[a] for a in likes[d]] + [attributes[a] for a in pad]
            liked = [liked[i] for i in rng.permutation(len(liked))]
            listed = f"{', '.join(liked[:-1])} and {liked[-1]}" if len(liked) > 1 else "".join(liked)
            f.write(json.dumps({"_id": names[d], "title": "", "text": f"{names[d]} likes {listed}."}) + "\n")
    with (path / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in range(n_queries):
            f.write(json.dumps({"_id": f"query_{q}", "text": f"Who likes {attributes[q]}?"}) + "\n")
    with (path / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, subset in enumerate(subsets):
            for d in subset:
                f.write(f"query_{q}\t{names[d]}\t1\n")
    return path


def _check_sizes(n_docs, k, core, n_queries) -> tuple[int, int, int, int]:
    n_docs, k = check_int(n_docs, "limit.generate", "n_docs"), check_int(k, "limit.generate", "k")
    core = n_docs if core is None else core
    if not isinstance(core, int) or not k < core <= n_docs:
        raise InvalidInputError(
            f"limit.generate: core must be an int with k={k} < core <= n_docs={n_docs}, got {core!r}. "
            "Every query needs k relevant documents from the core."
        )
    total = math.comb(core, k)
    if n_queries is None:
        if total > MAX_QUERIES:
            raise InvalidInputError(
                f"limit.generate: C(core, k) must be <= {MAX_QUERIES} queries, got C({core}, {k}) = {total}. "
                "Lower core or k, or pass n_queries to sample."
            )
        n_queries = total
    if not isinstance(n_queries, int) or not 1 <= n_queries <= min(total, MAX_QUERIES):
        raise InvalidInputError(
            f"limit.generate: n_queries must be an int in [1, {min(total, MAX_QUERIES)}] (C({core}, {k}) = {total} "
            f"subsets exist), got {n_queries!r}."
        )
    return n_docs, k, core, n_queries


_QUERY = re.compile(r"^Who likes (.+)\?$")
_DOC = re.compile(r"^(.+?) likes (.+)\.$")


def statistics(path: str | Path, *, split: str = "test") -> dict:
    """Check a LIMIT-style folder against its construction and return its statistics.

    Returns ``n_docs``, ``n_queries``, ``k`` (relevant documents per query, when constant),
    ``core`` (documents relevant to some query), ``attributes_per_doc`` ``[min, max]``,
    ``graph_density`` and ``average_query_strength`` (:mod:`embedlab.eval.limit.qrel_graph`; LIMIT: 0.0855
    and 28.47), and ``problems``: sentences naming every violated invariant (empty when the set is
    sound) — a query's attribute liked by a document it does not judge relevant, or missing from a
    relevant one; repeated relevant sets; documents with unequal numbers of attributes.
    """
    from embedlab.eval.data import load_beir
    from embedlab.eval.limit.qrel_graph import qrel_graph_stats

    data = load_beir(path)
    query_ids, query_texts, qrels = data.split(split)
    if not query_ids:
        raise DataFormatError(f"limit.statistics: split {split!r} of {path} must judge at least one query, got none.")
    problems: list[str] = []
    likes: dict[str, set[str]] = {}
    counts = []
    for doc_id, text in zip(data.corpus_ids, data.corpus_texts):
        m = _DOC.match(text)
        items = [a.strip() for a in m.group(2).split(", ")] if m else []
        if items and " and " in items[-1]:  # "A, B and C": the last two share one slot
            items[-1:] = items[-1].rsplit(" and ", 1)
        likes[doc_id] = set(items)
        counts.append(len(items))
    likers: dict[str, set[str]] = {}
    for doc_id, items in likes.items():
        for a in items:
            likers.setdefault(a, set()).add(doc_id)
    sizes, seen = [], set()
    for qid, text in zip(query_ids, query_texts):
        rel = {d for d, r in qrels[qid].items() if r > 0}
        sizes.append(len(rel))
        key = frozenset(rel)
        if key in seen:
            problems.append(f"query {qid!r} repeats another query's relevant set")
        seen.add(key)
        m = _QUERY.match(text)
        if not m:
            problems.append(f"query {qid!r} does not read 'Who likes X?'")
            continue
        holders = likers.get(m.group(1), set())
        if holders != rel:
            problems.append(f"query {qid!r}: '{m.group(1)}' is liked by {len(holders)} document(s), "
                            f"{len(holders & rel)} of its {len(rel)} relevant")
    if counts and min(counts) != max(counts):
        problems.append(f"documents like between {min(counts)} and {max(counts)} attributes, expected one number")
    graph = qrel_graph_stats(qrels)
    return {
        "n_docs": len(data.corpus_ids),
        "n_queries": len(query_ids),
        "k": sizes[0] if len(set(sizes)) == 1 else None,
        "core": graph["n_documents"],
        "attributes_per_doc": [min(counts), max(counts)],
        "graph_density": graph["graph_density"],
        "average_query_strength": graph["average_query_strength"],
        "problems": problems,
    }
