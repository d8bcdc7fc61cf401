"""LIMIT (Weller et al. 2025, "On the Theoretical Limitations of Embedding-Based Retrieval"): what one vector
per text cannot retrieve.

- :mod:`.generator`: LIMIT-style data (small, or the paper's 50k-document set) and its statistics check.
- :mod:`.capacity`: the free-embedding experiment (critical n per dimension); :mod:`.fit` its cubic fit and plot.
- :mod:`.check`: the same question asked of a user's own qrels; :mod:`.qrel_graph` their graph statistics.
- :mod:`.evaluate`: the recall table of dense (per dimension), BM25, hybrid and multi-vector retrieval.
"""

from embedlab.eval.limit.capacity import capacity_curve, critical_n, optimize_free_embeddings, solve_all_subsets
from embedlab.eval.limit.check import check_qrels
from embedlab.eval.limit.evaluate import evaluate_limit
from embedlab.eval.limit.generator import FULL, generate, statistics

__all__ = ["FULL", "generate", "statistics", "capacity_curve", "critical_n", "optimize_free_embeddings",
           "solve_all_subsets", "check_qrels", "evaluate_limit"]
