"""Measuring: data-set loaders, trec_eval-equal metrics, STS and retrieval evaluation, LIMIT data."""

from embedlab.eval.compat import CompatReport, compatibility_report
from embedlab.eval.data import BeirDataset, StsPair, load_beir, load_sts
from embedlab.eval.metrics import evaluate_run, per_query
from embedlab.eval.retrieval import evaluate_retrieval
from embedlab.eval.sts import evaluate_sts

__all__ = ["BeirDataset", "StsPair", "load_beir", "load_sts", "evaluate_run", "per_query",
           "evaluate_retrieval", "evaluate_sts", "compatibility_report", "CompatReport"]
