"""The LIMIT generator (small and full-size modes), its statistics check, and the LIMIT table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.eval import load_beir
from embedlab.eval.limit import FULL, generate, statistics


def test_full_size_mode_in_miniature(tmp_path):
    # The paper's construction at 1/100 scale: a core of 10 docs, 40 of its 45 pairs asked, 500 docs.
    path = generate(tmp_path / "mini", n_docs=500, core=10, n_queries=40, n_attributes=120, seed=1)
    stats = statistics(path)
    assert stats["problems"] == []
    assert (stats["n_docs"], stats["n_queries"], stats["k"], stats["core"]) == (500, 40, 2, 10)
    lo, hi = stats["attributes_per_doc"]
    assert lo == hi >= 8  # every document likes the same number of things
    data = load_beir(path)
    _, _, qrels = data.split("test")
    core_docs = {d for rel in qrels.values() for d in rel}
    assert len(core_docs) == 10 and len({frozenset(r) for r in qrels.values()}) == 40


def test_full_constants_follow_the_paper():
    assert FULL == {"n_docs": 50_000, "core": 46, "n_queries": 1000, "k": 2, "n_attributes": 1850}


def test_limit_small_passes_the_statistics_check(data_dir):
    stats = statistics(data_dir / "limit-small")
    assert stats["problems"] == []
    assert round(stats["graph_density"], 4) == 0.0855 and round(stats["average_query_strength"], 2) == 28.47


def test_statistics_catch_a_broken_set(tmp_path):
    path = generate(tmp_path / "s", n_docs=6, seed=0)
    rows = [json.loads(line) for line in (path / "corpus.jsonl").read_text().splitlines()]
    query = json.loads((path / "queries.jsonl").read_text().splitlines()[0])
    attribute = query["text"][len("Who likes "):-1]
    # a stray liker with one attribute too many: "..., B and C." -> "..., B, C and X."
    rows[-1]["text"] = rows[-1]["text"][:-1].replace(" and ", ", ") + f" and {attribute}."
    (path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = statistics(path)["problems"]
    assert any("'query_0'" in p and "liked by 3 document(s)" in p for p in problems)
    assert any("documents like between" in p for p in problems)


def test_generator_bad_input(tmp_path):
    with pytest.raises(InvalidInputError, match=r"n_queries must be an int in \[1, 45\] \(C\(10, 2\) = 45 subsets exist\), got 46"):
        generate(tmp_path / "a", n_docs=100, core=10, n_queries=46)
    with pytest.raises(InvalidInputError, match="core must be an int with k=2 < core <= n_docs=5, got 6"):
        generate(tmp_path / "b", n_docs=5, core=6)
    with pytest.raises(InvalidInputError, match=r"C\(core, k\) must be <= 200000 queries, got C\(1000, 2\) = 499500"):
        generate(tmp_path / "c", n_docs=1000)
    with pytest.raises(InvalidInputError, match="attributes_per_doc must be an int >= 4"):
        generate(tmp_path / "d", n_docs=5, attributes_per_doc=2)
    with pytest.raises(InvalidInputError, match=r"vocabulary must be one of \['coined', 'compositional'\]"):
        generate(tmp_path / "e", n_docs=5, vocabulary="english")
    with pytest.raises(InvalidInputError, match="n_attributes must be >= 14"):  # 10 queries + 4 to fill a non-core doc
        generate(tmp_path / "f", n_docs=50, core=5, n_queries=10, n_attributes=11)


def test_compositional_vocabulary_still_available(tmp_path):
    path = generate(tmp_path / "c", n_docs=6, vocabulary="compositional", seed=2)
    assert statistics(path)["problems"] == []


def test_truncating_full_vectors_equals_encoding_with_dim(encoder):
    from embedlab.index import DenseRetriever

    texts = ["Ana likes Moonberries.", "Bo likes Frostlanterns and Seabells.", "Who likes Moonberries?"]
    full = encoder.encode(texts)
    for d in (32, 128):
        via_fit = DenseRetriever(encoder, dim=d).fit(embeddings=full).embeddings_
        np.testing.assert_allclose(via_fit, encoder.encode(texts, dim=d), atol=1e-6)


def test_evaluate_limit_table_on_a_tiny_generated_set(tmp_path, encoder):
    from embedlab.eval.limit.evaluate import evaluate_limit

    data = load_beir(generate(tmp_path / "t", n_docs=8, seed=0))
    rows = evaluate_limit(data, encoder, dims=(16, 384), k_values=(2, 5))
    expected = {"dense d=16", "dense d=384", "BM25", "hybrid RRF", "hybrid weighted", "hybrid DBSF"}
    assert expected | {"multi-vector MaxSim"} == set(rows)
    assert rows["BM25"]["recall@2"] == 1.0  # coined attributes occur in their relevant documents only
    assert all(0 <= v <= 1 for r in rows.values() for v in r.values())
    with pytest.raises(InvalidInputError, match=r"dims must be ints in \[1, 384\], got \[8, 512\]"):
        evaluate_limit(data, encoder, dims=(8, 512))
    with pytest.raises(InvalidInputError, match="corpus_embeddings must have 8 rows"):
        evaluate_limit(data, encoder, corpus_embeddings=np.zeros((3, 384), np.float32))


def test_evaluate_limit_rejects_an_empty_split(tmp_path, encoder):
    from embedlab.eval.limit.evaluate import evaluate_limit

    path = generate(tmp_path / "e", n_docs=4, seed=0)
    (path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(InvalidInputError, match="split 'test' must judge at least one query, got none"):
        evaluate_limit(load_beir(path), encoder)


def test_evaluate_limit_multivector_is_a_plain_bool(tmp_path, encoder):
    from embedlab.eval.limit.evaluate import evaluate_limit

    data = load_beir(generate(tmp_path / "b", n_docs=4, seed=0))
    with pytest.raises(InvalidInputError, match="multivector must be True or False, got None"):
        evaluate_limit(data, encoder, dims=(16,), k_values=(2,), multivector=None)
    assert "multi-vector MaxSim" not in evaluate_limit(data, encoder, dims=(16,), k_values=(2,), multivector=False)
