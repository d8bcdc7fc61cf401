"""``benchmarks/results/collections.json`` is written by two scripts (``ann.py`` and ``filtered.py``): each
replaces only its own figures, tables and notes, so either can be re-run alone."""

from __future__ import annotations

import json

from common import RESULTS, write_results

COMMAND = "python benchmarks/ann.py && python benchmarks/filtered.py"
PARTS = {  # part -> (figure prefixes, table title prefix, note prefix)
    "ann": (("glove_",), "GloVe", "[ann]"),
    "filtered": (("filtered_", "insert_", "reopen_", "disk_", "ram_", "wordnet_"), "WordNet", "[filtered]"),
}


def write_part(part: str, figures: dict, tables: list[dict], notes: list[str]) -> None:
    prefixes, title, tag = PARTS[part]
    path = RESULTS / "collections.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    merged_figures = {k: v for k, v in old.get("figures", {}).items() if not k.startswith(prefixes)}
    merged_figures.update(figures)
    merged_tables = [t for t in old.get("tables", []) if not t["title"].startswith(title)] + tables
    merged_notes = [n for n in old.get("notes", []) if not n.startswith(tag)] + [f"{tag} {n}" for n in notes]
    order = ["glove_", "filtered_", "insert_", "reopen_", "disk_", "ram_", "wordnet_"]
    merged_figures = dict(sorted(merged_figures.items(),
                                 key=lambda kv: next((i for i, p in enumerate(order) if kv[0].startswith(p)), 99)))
    merged_tables.sort(key=lambda t: 0 if t["title"].startswith("GloVe") else 1)
    merged_notes.sort(key=lambda n: 0 if n.startswith("[ann]") else 1)
    write_results("collections", merged_figures, tables=merged_tables, notes=merged_notes, command=COMMAND)
