"""The command line: machine-readable output and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "embedlab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_eval_retrieval_json_is_one_object(data_dir):
    out = _run("eval", "retrieval", "--data", str(data_dir / "limit-small"), "--k", "2,10", "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"recall@2", "ndcg@10", "mrr@10"}


def test_encode_writes_npy(tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("first line\nsecond line\n")
    out = _run("encode", str(src), "-o", str(tmp_path / "v.npy"), "--dim", "32", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    assert json.loads(out.stdout)["n"] == 2


def test_errors_are_one_clear_line(tmp_path):
    out = _run("eval", "sts", "--data", str(tmp_path / "nope.csv"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: load_sts:")
    assert "Traceback" not in out.stderr
