"""Data-set loaders: BEIR folders and STS files. Malformed input names the file and line."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.files import iter_jsonl
from embedlab.errors import DataFormatError, InvalidInputError

Qrels = dict[str, dict[str, int]]
"""query id -> {document id -> graded relevance}."""


@dataclass
class BeirDataset:
    """A BEIR-format retrieval set held in memory.

    ``corpus_ids[i]`` names document ``i``; ``corpus_texts[i]`` is its title and text joined (the
    BEIR convention); ``metadata[i]`` is its ``metadata`` object or ``{}``. ``queries`` maps query id
    to text; ``qrels[split]`` maps query id to relevant documents.
    """

    path: Path
    corpus_ids: list[str]
    corpus_texts: list[str]
    metadata: list[dict]
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return sorted(self.qrels)

    def split(self, name: str) -> tuple[list[str], list[str], Qrels]:
        """``(query_ids, query_texts, qrels)`` of the queries judged in split ``name``, in file order."""
        if name not in self.qrels:
            raise InvalidInputError(
                f"BeirDataset.split: split must be one of {self.splits}, got {name!r}. "
                f"Add qrels/{name}.tsv to {self.path} or pick an existing split."
            )
        qrels = self.qrels[name]
        missing = [q for q in qrels if q not in self.queries]
        if missing:
            raise DataFormatError(
                f"BeirDataset.split: qrels of split {name!r} reference {len(missing)} query id(s) missing from "
                f"queries.jsonl, e.g. {missing[0]!r}."
            )
        ids = [q for q in self.queries if q in qrels]
        return ids, [self.queries[q] for q in ids], qrels


def _read_jsonl(path: Path) -> list[dict]:
    return [{**row, "__line__": lineno} for lineno, row in iter_jsonl(path)]


def _need(row: dict, key: str, path: Path, kind=str):
    if key not in row:
        raise DataFormatError(f"{path}:{row['__line__']}: expected a {key!r} field, got fields {sorted(k for k in row if k != '__line__')}.")
    value = row[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(f"{path}:{row['__line__']}: field {key!r} must be {kind.__name__}, got {type(value).__name__}.")
    return value


def _read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    if path.suffix == ".jsonl":
        for row in _read_jsonl(path):
            qid, did = str(_need(row, "query-id", path, (str, int))), str(_need(row, "corpus-id", path, (str, int)))
            qrels.setdefault(qid, {})[did] = int(_need(row, "score", path, (int, float)))
        return qrels
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] in ("query-id", "qid", "query_id"):
                continue  # header
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), got {len(parts)}.")
            try:
                score = int(float(parts[2]))
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: score must be a number, got {parts[2]!r}.") from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_beir(path: str | Path) -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and qrels.

    Qrels are ``qrels/<split>.tsv`` (TSV with header) or ``qrels/<split>.jsonl``; a top-level
    ``qrels.jsonl`` or ``qrels.tsv`` is read as the split ``test``.
    """
    path = Path(path)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise DataFormatError(f"load_beir: {path} must be a BEIR folder with {name}, got none. Check the path.")
    corpus_ids, texts, metadata = [], [], []
    for row in _read_jsonl(path / "corpus.jsonl"):
        corpus_ids.append(str(_need(row, "_id", path / "corpus.jsonl", (str, int))))
        text = _need(row, "text", path / "corpus.jsonl")
        title = row.get("title") or ""
        texts.append(f"{title} {text}".strip() if title else text)
        meta = row.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DataFormatError(f"{path / 'corpus.jsonl'}:{row['__line__']}: field 'metadata' must be an object, got {type(meta).__name__}.")
        metadata.append(meta)
    if len(set(corpus_ids)) != len(corpus_ids):
        raise DataFormatError(f"load_beir: {path / 'corpus.jsonl'} must have unique _id values, got duplicates.")
    queries = {str(_need(r, "_id", path / "queries.jsonl", (str, int))): _need(r, "text", path / "queries.jsonl")
               for r in _read_jsonl(path / "queries.jsonl")}
    qrels: dict[str, Qrels] = {}
    qdir = path / "qrels"
    if qdir.is_dir():
        for f in sorted(qdir.iterdir()):
            if f.suffix in (".tsv", ".jsonl"):
                qrels[f.stem] = _read_qrels(f)
    for name in ("qrels.jsonl", "qrels.tsv"):
        if (path / name).is_file():
            qrels.setdefault("test", _read_qrels(path / name))
    known = set(corpus_ids)
    for split, q in qrels.items():
        unknown = {d for rel in q.values() for d in rel} - known
        if unknown:
            raise DataFormatError(
                f"load_beir: qrels of split {split!r} reference {len(unknown)} document id(s) missing from "
                f"corpus.jsonl, e.g. {sorted(unknown)[0]!r}. Fix the qrels or the corpus."
            )
    return BeirDataset(path, corpus_ids, texts, metadata, queries, qrels)


@dataclass(frozen=True)
class StsPair:
    sentence1: str
    sentence2: str
    score: float


def load_sts(path: str | Path, split: str | None = None) -> list[StsPair]:
    """Load STS pairs from a TSV file (STS Benchmark layout: genre, file, year, id, score, s1, s2, ...).

    ``path`` is a file, or a folder with ``sts-<split>.csv`` when ``split`` is given.
    """
    path = Path(path)
    if path.is_dir():
        if split is None:
            raise InvalidInputError(f"load_sts: split must be given when path is a folder, got None for {path}.")
        path = path / f"sts-{split}.csv"
    if not path.is_file():
        raise DataFormatError(f"load_sts: {path} must be an STS TSV file, got no such file.")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row:
                continue
            if len(row) < 7:
                raise DataFormatError(f"{path}:{lineno}: expected at least 7 tab-separated fields, got {len(row)}.")
            try:
                score = float(row[4])
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: field 5 (score) must be a number, got {row[4]!r}.") from None
            pairs.append(StsPair(row[5], row[6], score))
    return pairs
