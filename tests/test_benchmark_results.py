"""``benchmarks/common.write_results``: a partial re-run carries the figures it did not measure, with their own run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def common(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def _table(title):
    return {"title": title, "columns": ["a"], "rows": [[1]]}


def test_a_partial_run_carries_what_it_did_not_measure_and_says_from_which_run(common, tmp_path):
    path = common.write_results("x", {"leaf_ratio": 0.8, "soup_gain": -0.03, "map_ndcg": 0.19},
                                tables=[_table("LEAF"), _table("soups")],
                                notes=["LEAF ratio 0.8 is below the goal.", "the greedy soup is below the best run."],
                                command="python full.py")
    full = json.loads(path.read_text())

    common.write_results("x", {"leaf_ratio": 0.9}, tables=[_table("LEAF")], command="python leaf.py",
                         carry=["soup_", "map_"])
    first = json.loads(path.read_text())
    assert first["figures"] == {"leaf_ratio": 0.9, "soup_gain": -0.03, "map_ndcg": 0.19}
    assert [t["title"] for t in first["tables"]] == ["LEAF", "soups"]
    assert first["notes"][0] == "the greedy soup is below the best run."  # the old LEAF note is this run's to make
    assert first["notes"][1].startswith(f"carried from the run of {full['date']} (commit {full['commit']}, "
                                        "python full.py), not re-run here: map_ndcg, soup_gain.")
    assert len(first["notes"]) == 2

    # a second partial run re-measures the map: the soup keeps the first run as its origin, not the partial one
    common.write_results("x", {"leaf_ratio": 0.95, "map_ndcg": 0.2}, tables=[_table("LEAF: another student")],
                         command="python again.py", carry=["soup_"])
    second = json.loads(path.read_text())
    # the old LEAF table is about a figure this run measured: replaced, not carried beside the new one
    assert [t["title"] for t in second["tables"]] == ["LEAF: another student", "soups"]
    assert second["figures"] == {"leaf_ratio": 0.95, "map_ndcg": 0.2, "soup_gain": -0.03}
    assert second["carried"] == {"soup_gain": {"date": full["date"], "commit": full["commit"],
                                               "command": "python full.py"}}
    assert sum(n.startswith("carried ") for n in second["notes"]) == 1


def test_nothing_is_carried_without_carry_or_a_previous_file(common, tmp_path):
    path = common.write_results("y", {"a_b": 1}, carry=["c_"])  # no previous file
    assert "carried" not in json.loads(path.read_text())
    common.write_results("y", {"c_d": 2})
    assert json.loads(path.read_text())["figures"] == {"c_d": 2}
