"""Issue 10's figures: test-suite time before and after the renovation (one sitting), the demo's time, and
structure counts read from the source tree.

    git worktree add ../before 14a60ed                         # the commit before the renovation
    python benchmarks/renovation.py --before ../before
    python benchmarks/renovation.py --skip-pytest              # structure counts and the demo only

``--before`` runs that checkout's test suite with this virtualenv (its ``src`` first on ``PYTHONPATH``), then this
tree's suite, then ``embedlab demo``; each from a cold ONNX export cache, so neither suite reuses the other's
exported models.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common

SRC = common.ROOT / "src" / "embedlab"
REGISTRY_PATTERNS = (r"\bimportlib\b", r"\b__import__\(", r"import_module\(")
TOPK_PATTERN = r"\bargpartition\(|\blexsort\("


def structure() -> dict:
    """Counts read from the tree: modules directly in index/, import-string registries, top-k implementations."""
    index_modules = sorted(p.name for p in (SRC / "index").glob("*.py") if p.name != "__init__.py")
    registries, topk_files = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(SRC))
        registries += [f"{rel}:{i}" for i, line in enumerate(text.splitlines(), 1)
                       if any(re.search(p, line) for p in REGISTRY_PATTERNS)]
        if re.search(TOPK_PATTERN, text):
            topk_files.append(rel)
    return {"index_top_level_modules": len(index_modules), "index_top_level_names": index_modules,
            "import_string_registries": len(registries), "import_string_sites": registries,
            "topk_implementations": len(topk_files), "topk_files": topk_files}


def onnx_cache_dirs() -> list[Path]:
    """Where ONNX exports are cached: beside the bundled model, and the user cache (both emptied before a run)."""
    from embedlab.models.folder import resolve_model_path

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [Path(resolve_model_path(None)) / ".embedlab-onnx", base / "embedlab" / "onnx"]


def timed(cmd: list[str], cwd: Path, env: dict | None = None, log: Path | None = None) -> tuple[float, int]:
    for path in onnx_cache_dirs():
        shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    with open(log or os.devnull, "w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - start, rc


def last_line(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="checkout of the commit before the renovation")
    parser.add_argument("--skip-pytest", action="store_true")
    args = parser.parse_args()
    figures: dict = {}
    notes: list[str] = []
    logs = common.ROOT / ".cache" / "renovation"
    logs.mkdir(parents=True, exist_ok=True)
    if not args.skip_pytest:
        if args.before is None:
            parser.error("--before is needed to time the test suite before and after (or pass --skip-pytest)")
        before = args.before.resolve()
        seconds, rc = timed([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], before,
                            {"PYTHONPATH": str(before / "src")}, logs / "pytest-before.log")
        figures["pytest_seconds_before"] = round(seconds, 1)
        notes.append(f"before ({before.name}, exit {rc}): {last_line(logs / 'pytest-before.log')}")
        seconds, rc = timed([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], common.ROOT, None,
                            logs / "pytest-after.log")
        figures["pytest_seconds_after"] = round(seconds, 1)
        figures["pytest_time_ratio_after_vs_before"] = round(figures["pytest_seconds_after"] / figures["pytest_seconds_before"], 3)
        notes.append(f"after (exit {rc}): {last_line(logs / 'pytest-after.log')}")
    seconds, rc = timed([sys.executable, "-m", "embedlab.cli", "demo"], common.ROOT, None, logs / "demo.log")
    figures["demo_seconds"] = round(seconds, 1)
    figures["demo_exit_code"] = rc
    figures.update(structure())
    common.print_table("renovation", ["figure", "value"],
                       [[k, v] for k, v in figures.items() if not isinstance(v, list)])
    for note in notes:
        print(note)
    common.write_results("renovation", figures, notes=notes)


if __name__ == "__main__":
    main()
