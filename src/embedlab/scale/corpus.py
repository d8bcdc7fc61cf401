"""Corpora read as a stream: ``(id, text, metadata)`` records from a BEIR folder, JSON lines or Parquet files,
in a fixed order, a bounded number at a time (never the whole corpus in memory).

Accepted layouts: a BEIR folder (its ``corpus.jsonl``: ``_id``, ``text``, optional ``title`` and ``metadata``),
a ``.jsonl`` file (``_id`` or ``id``, ``text``, optional ``title`` and ``metadata``), a ``.parquet`` file or a folder
of them (columns ``id``/``_id``, ``text``, optional ``title``; every other column is metadata). A record without
a text, or an id seen before, is a :class:`~embedlab.errors.DataFormatError` naming the file and line (row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from embedlab.errors import DataFormatError
from embedlab.files import iter_jsonl

ID_FIELDS = ("_id", "id")


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    metadata: dict


def corpus_files(path: str | Path) -> list[Path]:
    """The files of the corpus at ``path``, in reading order."""
    path = Path(path)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        return [path / "corpus.jsonl"]
    if path.is_dir():
        files = sorted(path.glob("*.parquet")) or sorted(path.glob("*.jsonl"))
        if files:
            return files
    elif path.is_file() and path.suffix in (".jsonl", ".parquet"):
        return [path]
    raise DataFormatError(f"corpus: {path} must be a BEIR folder (corpus.jsonl), a .jsonl or .parquet file, or a "
                          "folder of .parquet / .jsonl files; got none of these. Check the path.")


def read_corpus(path: str | Path) -> Iterator[Record]:
    """Every record of the corpus at ``path``, in order; duplicate ids and missing texts fail at their line."""
    seen: set[str] = set()
    for file in corpus_files(path):
        rows = _parquet_rows(file) if file.suffix == ".parquet" else _jsonl_rows(file)
        for where, row in rows:
            record = _record(row, file, where)
            if record.id in seen:
                raise DataFormatError(f"{file}:{where}: id {record.id!r} appears twice in the corpus; ids must be "
                                      "unique. Remove or rename the duplicate.")
            seen.add(record.id)
            yield record


def _record(row: dict, file: Path, where: str) -> Record:
    key = next((k for k in ID_FIELDS if row.get(k) is not None), None)
    if key is None or not isinstance(row[key], (str, int)) or isinstance(row[key], bool):
        raise DataFormatError(f"{file}:{where}: a record must have an id field ('_id' or 'id', a string or int), "
                              f"got fields {sorted(row)[:10]}.")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(f"{file}:{where}: record {row[key]!r} must have a non-empty 'text' string, got "
                              f"{type(text).__name__ if text is not None else 'no text field'}.")
    title = row.get("title") or ""
    if "metadata" in row:
        metadata = row["metadata"] or {}
        if not isinstance(metadata, dict):
            raise DataFormatError(f"{file}:{where}: field 'metadata' must be an object, got {type(metadata).__name__}.")
    else:
        metadata = {k: v for k, v in row.items() if k not in (*ID_FIELDS, "text", "title")}
    return Record(str(row[key]), f"{title} {text}".strip() if title else text, metadata)


def _jsonl_rows(file: Path) -> Iterator[tuple[str, dict]]:
    return ((str(lineno), row) for lineno, row in iter_jsonl(file))


def _parquet_rows(file: Path, batch_rows: int = 4096) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataFormatError(f"{file}: expected a Parquet file, got an unreadable one ({exc}).") from None
    row = 0
    for batch in reader.iter_batches(batch_size=batch_rows):
        for item in batch.to_pylist():
            row += 1
            yield f"row {row}", item
