"""The free-embedding capacity experiment: tiny n and d only (the real curve is a benchmark)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.eval.limit import capacity
from embedlab.eval.limit.capacity import critical_n, optimize_free_embeddings, solve_all_subsets
from embedlab.eval.limit.fit import PAPER_CRITICAL_N, fit_cubic, plot_capacity
from embedlab.eval.limit.check import check_qrels
from embedlab.eval.limit.qrel_graph import qrel_graph_stats

FAST = {"patience": 200, "threads": 1}


def test_easy_problem_is_solved_and_verified_by_exact_search():
    r = solve_all_subsets(5, 2, 6, seeds=(0,), **FAST)
    assert r.solved and r.accuracy == 1.0 and len(r.failing_queries) == 0


def test_two_dimensions_cannot_hold_all_pairs_of_four_points():
    # On the circle only angularly adjacent pairs can be a top-2 set: 4 of the 6 pairs of 4 points.
    r = solve_all_subsets(4, 2, 2, seeds=(0, 1), **FAST)
    assert not r.solved and r.accuracy <= 4 / 6 + 1e-6
    assert 2 <= len(r.failing_queries) <= 6


def test_critical_n_in_two_dimensions_is_three():
    result = critical_n(2, k=2, seeds=(0, 1), **FAST)
    assert result.n == 3
    assert any(n == 3 and ok for n, ok, _, _ in result.trials)
    assert all(not ok for n, ok, _, _ in result.trials if n > 3)


@pytest.mark.parametrize("truth,start", [(7, 3), (7, 7), (7, 20), (12, 5), (4, 30)])
def test_galloping_then_binary_search_finds_the_threshold(monkeypatch, truth, start):
    probes = []

    def fake(n, k, dim, **options):
        probes.append(n)
        return capacity.FreeEmbeddingResult(n, dim, n <= truth, 1.0, 0.0, 1, 0.0, 0, np.zeros(0, np.int64))

    monkeypatch.setattr(capacity, "solve_all_subsets", fake)
    result = critical_n(4, k=2, start=start, seeds=(0,))
    assert result.n == truth
    assert len(probes) == len(set(probes)) <= 2 * math.ceil(math.log2(abs(truth - start) + 2)) + 2


def test_retries_run_the_next_seed_only_after_a_failure(monkeypatch):
    seen = []

    def fake(n, k, dim, **options):
        seed = options["seeds"][0]
        seen.append((n, seed))
        ok = n <= 5 or (n == 6 and seed == 2)  # n=6 needs the third seed
        return capacity.FreeEmbeddingResult(n, dim, ok, 1.0, 0.0, 1, 0.0, seed, np.zeros(0, np.int64))

    monkeypatch.setattr(capacity, "solve_all_subsets", fake)
    assert critical_n(4, start=5, seeds=(0, 1, 2)).n == 6
    assert [s for n, s in seen if n == 5] == [0]
    assert [s for n, s in seen if n == 6] == [0, 1, 2]


def test_general_relevant_sets_and_failing_query_positions():
    relevant = [[0], [1, 2], [3], [0, 1, 2, 3]]  # sizes differ; the last query has every document
    r = optimize_free_embeddings(relevant, 4, 3, seeds=(0,), **FAST)
    assert r.solved


def test_bad_input_is_rejected():
    with pytest.raises(InvalidInputError, match=r"n must be an int > k=2, got 2"):
        solve_all_subsets(2, 2, 4)
    with pytest.raises(InvalidInputError, match=r"k must be a positive int, got 0"):
        solve_all_subsets(5, 0, 4)
    with pytest.raises(InvalidInputError, match=r"must fit in memory_limit=2.00 GiB, got 1999000 queries x 2000 documents x 2 seed\(s\) needing 60.05 GiB"):
        solve_all_subsets(2000, 2, 8)
    with pytest.raises(InvalidInputError, match=r"relevant document positions must be in \[0, 3\), got 5 in query 1"):
        optimize_free_embeddings([[0, 1], [2, 5]], 3, 2)
    with pytest.raises(InvalidInputError, match="query 0 has none"):
        optimize_free_embeddings([[]], 3, 2)
    with pytest.raises(InvalidInputError, match="dim must be a positive int, got 0"):
        optimize_free_embeddings([[0]], 3, 0)
    with pytest.raises(InvalidInputError, match="seeds must hold at least one int"):
        optimize_free_embeddings([[0]], 3, 2, seeds=())
    with pytest.raises(InvalidInputError, match="threads must be a positive int or None, got 0"):
        optimize_free_embeddings([[0]], 3, 2, threads=0)


def test_threads_setting_is_restored():
    import torch

    before = torch.get_num_threads()
    solve_all_subsets(3, 2, 3, seeds=(0,), patience=50, threads=1)
    assert torch.get_num_threads() == before


def test_fit_cubic_recovers_the_papers_curve_and_plot_writes_png(tmp_path):
    dims = np.arange(4, 21, 2)
    coef_true = (-10.5322, 4.0309, 0.0520, 0.0037)
    ns = np.polyval(coef_true[::-1], dims)
    coef, r2 = fit_cubic(dims, ns)
    np.testing.assert_allclose(coef, coef_true, rtol=1e-6, atol=1e-8)
    assert r2 == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="need >= 4"):
        fit_cubic([4, 8], [10, 28])
    plot_capacity(dict(PAPER_CRITICAL_N), tmp_path / "c.png", coef=coef)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qrel_graph_stats_reproduce_the_papers_limit_values(data_dir):
    from embedlab.eval import load_beir

    _, _, qrels = load_beir(data_dir / "limit-small").split("test")
    stats = qrel_graph_stats(qrels)
    assert round(stats["graph_density"], 4) == 0.0855  # Weller et al. 2025, table 1
    assert round(stats["average_query_strength"], 2) == 28.47
    assert stats["n_queries"] == 1000 and stats["n_documents"] == 46


def test_qrel_graph_stats_by_hand():
    qrels = {"a": {"x": 1, "y": 1}, "b": {"y": 1, "z": 1}, "c": {"w": 1}, "d": {"x": 0}}
    stats = qrel_graph_stats(qrels)  # "d" has no positive judgement: left out
    assert stats["n_queries"] == 3
    assert stats["graph_density"] == pytest.approx(2 * 1 / (3 * 2))  # one edge a-b of 3 possible
    assert stats["average_query_strength"] == pytest.approx(2 * (1 / 3) / 3)  # Jaccard(a, b) = 1/3, both ends
    with pytest.raises(InvalidInputError, match="at least one positive judgement"):
        qrel_graph_stats({"q": {"x": 0}})


def test_check_qrels_reports_failures_and_the_smallest_dimension():
    docs = [f"d{i}" for i in range(6)]
    qrels = {f"q{i}": {a: 1, b: 1} for i, (a, b) in enumerate(itertools.combinations(docs, 2))}
    result = check_qrels(qrels, 2, corpus_ids=docs, seeds=(0, 1), **FAST)
    assert not result["realisable"] and result["n_failing"] > 0
    assert set(result["failing_queries"]) <= set(qrels)
    assert result["smallest_dim"] == 4  # all pairs of 6 points need 4 dimensions (n(3) = 4 < 6 <= n(4))
    assert result["dims_tried"]["2"] is False and result["dims_tried"]["4"] is True
    assert result["n_documents"] == 6 and result["n_queries"] == 15


def test_check_qrels_bad_input():
    with pytest.raises(InvalidInputError, match="unknown document id 'zz' in query 'q'"):
        check_qrels({"q": {"a": 1, "zz": 1}}, 4, corpus_ids=["a", "b"])
    with pytest.raises(InvalidInputError, match="at least one query with a relevant document, got none"):
        check_qrels({}, 4)
    with pytest.raises(InvalidInputError, match="dim must be a positive int, got 0"):
        check_qrels({"q": {"a": 1}}, 0)
