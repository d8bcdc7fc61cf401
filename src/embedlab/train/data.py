"""Training data: rows of one data set (:class:`PairDataset`) and seeded, resumable batches (:class:`Batches`).

A batch is a ``dict[str, list]`` of columns, in one of two kinds:

- contrastive: ``{"anchor": [str] * b, "positive": [str] * b}`` and optionally ``"negative": [[str] * k] * b``
  (``k`` hard negatives per row, the same ``k`` for every row of a data set);
- scored: ``{"sentence1": [str] * b, "sentence2": [str] * b, "score": [float] * b}``;
- texts: ``{"text": [str] * b}``, unlabelled texts (distillation: :mod:`embedlab.train.distill`).

The column names are sentence-transformers' (``anchor`` / ``positive`` / ``negative`` or ``negative_1``,
``negative_2``, ...; ``sentence1`` / ``sentence2`` / ``score``), so its users' JSON-lines files load as they are.
Batches are :class:`Batch` dicts that also carry the data set's per-column ``prompts``, which the losses of
:mod:`embedlab.train.losses` pass to ``Encoder.tokenize(texts, prompt=...)``.

Batches of a contrastive data set never hold two rows that share a text (the no-duplicates sampler of
sentence-transformers): a duplicate positive would be a false in-batch negative of the other row's anchor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.files import iter_jsonl
from embedlab.params import check_choice, check_int

CONTRASTIVE = ("anchor", "positive", "negative")
SCORED = ("sentence1", "sentence2", "score")
TEXTS = ("text",)
TEXT_COLUMNS = {"contrastive": ("anchor", "positive", "negative"), "scored": ("sentence1", "sentence2"),
                "texts": TEXTS}
SAMPLING = ("proportional", "round_robin")
# the name a column's prompt is saved under with the trained model (Encoder.encode(prompt_name=...))
PROMPT_NAMES = {"anchor": "query", "positive": "document", "negative": "document", "sentence1": "sentence",
                "sentence2": "sentence", "text": "text"}
STATE_VERSION = 1


class Batch(dict):
    """One batch: a ``dict[str, list]`` of columns, plus ``prompts`` (column -> prompt) for the loss to apply.

    A plain ``dict`` works wherever a :class:`Batch` does; it just has no prompts."""

    def __init__(self, columns: Mapping[str, list], prompts: Mapping[str, str] | None = None) -> None:
        super().__init__(columns)
        self.prompts: dict[str, str] = dict(prompts or {})


def prompt_for(batch: Mapping, column: str) -> str | None:
    """The prompt of ``column`` in ``batch`` (``None`` when it has none). ``negative`` falls back to ``positive``'s:
    hard negatives are ranked against the positives, so they are encoded the same way."""
    prompts = getattr(batch, "prompts", None) or {}
    if column == "negative" and column not in prompts:
        column = "positive"
    return prompts.get(column) or None


# ---------------------------------------------------------------------------------------------- one data set
class PairDataset:
    """The rows of one training data set, held as columns (see the module docstring for the two kinds).

    ``columns`` maps column names to equal-length lists; ``prompts`` maps text columns to instruction prompts
    (e.g. ``{"anchor": "query: ", "positive": "passage: "}``; ``negative`` uses ``positive``'s unless given).
    Build from files with :meth:`from_jsonl`, :meth:`from_beir` or :meth:`from_sts`.
    """

    def __init__(self, columns: Mapping[str, list], *, prompts: Mapping[str, str] | None = None,
                 source: str = "") -> None:
        self.source = source
        self.kind, self._columns = _check_columns(dict(columns), f"PairDataset({source!r})" if source else "PairDataset")
        self.prompts = _check_prompts(prompts, self.kind, self.columns, "PairDataset")
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ loaders
    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, *, prompts: Mapping[str, str] | None = None) -> "PairDataset":
        """Read a JSON-lines file: one object per line with ``anchor``, ``positive`` and optionally ``negative``
        (a str or a list of str) or ``negative_1``, ``negative_2``, ...; or ``sentence1``, ``sentence2``, ``score``.
        Blank lines are skipped; a malformed line raises :class:`DataFormatError` naming the file and line."""
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"PairDataset.from_jsonl: path must be a JSON-lines file, got {str(path)!r} "
                                  "(no such file). Check the path.")
        kind, columns, width = None, None, None
        for lineno, row in iter_jsonl(path):
            where = f"{path}:{lineno}"
            row_kind, values = _parse_row(row, where)
            if kind is None:
                kind, columns = row_kind, {name: [] for name in values}
                width = len(values.get("negative", ()))
            elif row_kind != kind:
                raise DataFormatError(f"{where}: every row must be {kind} like the first, got a {row_kind} row "
                                      f"(fields {sorted(row)}). Split the file into one file per kind.")
            if kind == "contrastive" and len(values.get("negative", ())) != width:
                raise DataFormatError(f"{where}: every row must have the same number of negatives, got "
                                      f"{len(values.get('negative', ()))} after {width} on the first row. "
                                      "Pad or trim the hard negatives to one count.")
            for name, value in values.items():
                columns[name].append(value)
        if columns is None:
            raise InvalidInputError(f"PairDataset.from_jsonl: path must hold at least one row, got {str(path)!r} "
                                    "with none. Check the file.")
        if width == 0:
            columns.pop("negative", None)
        return cls(columns, prompts=prompts, source=str(path))

    @classmethod
    def from_beir(cls, folder: str | os.PathLike, split: str, *,
                  prompts: Mapping[str, str] | None = None) -> "PairDataset":
        """(query, relevant document) pairs of a BEIR folder's qrels ``split`` (relevance > 0), in qrels order;
        a query with several relevant documents gives several rows."""
        from embedlab.eval.data import load_beir

        data = load_beir(folder)
        if split not in data.qrels:
            raise InvalidInputError(f"PairDataset.from_beir: split must be one of {data.splits}, got {split!r}. "
                                    f"Add qrels/{split}.tsv to {folder} or pick an existing split.")
        query_ids, query_texts, qrels = data.split(split)
        docs = dict(zip(data.corpus_ids, data.corpus_texts))
        text = dict(zip(query_ids, query_texts))
        anchors, positives = [], []
        for qid, judged in qrels.items():
            for did, rel in judged.items():
                if rel > 0:
                    anchors.append(text[qid])
                    positives.append(docs[did])
        if not anchors:
            raise InvalidInputError(f"PairDataset.from_beir: split must judge at least one document relevant "
                                    f"(score > 0), got none in {split!r} of {folder}. Pick another split.")
        return cls({"anchor": anchors, "positive": positives}, prompts=prompts, source=f"{folder}:{split}")

    @classmethod
    def from_texts(cls, texts, *, prompts: Mapping[str, str] | None = None, source: str = "") -> "PairDataset":
        """Unlabelled texts (the ``texts`` kind, column ``text``), duplicates dropped, first occurrences in order."""
        if isinstance(texts, str) or not hasattr(texts, "__iter__"):
            raise InvalidInputError(f"PairDataset.from_texts: texts must be a list of str, got {type(texts).__name__}.")
        texts = list(texts)
        if all(isinstance(t, str) for t in texts):  # else the column check names the bad row
            texts = list(dict.fromkeys(texts))
        return cls({"text": texts}, prompts=prompts, source=source)

    @classmethod
    def from_sts(cls, folder: str | os.PathLike, split: str, *,
                 prompts: Mapping[str, str] | None = None) -> "PairDataset":
        """Scored pairs of an STS Benchmark folder's ``sts-<split>.csv``, scores divided by 5 (into [0, 1])."""
        from embedlab.eval.data import load_sts

        folder = Path(folder)
        if not (folder / f"sts-{split}.csv").is_file():
            found = sorted(p.stem[4:] for p in folder.glob("sts-*.csv")) if folder.is_dir() else []
            raise InvalidInputError(f"PairDataset.from_sts: split must be one of {found}, got {split!r} "
                                    f"(no sts-{split}.csv in {folder}). Pick an existing split.")
        pairs = load_sts(folder, split)
        if not pairs:
            raise InvalidInputError(f"PairDataset.from_sts: split must hold at least one pair, got none in "
                                    f"{folder / f'sts-{split}.csv'}. Check the file.")
        return cls({"sentence1": [p.sentence1 for p in pairs], "sentence2": [p.sentence2 for p in pairs],
                    "score": [p.score / 5.0 for p in pairs]}, prompts=prompts, source=f"{folder}:{split}")

    # ------------------------------------------------------------------ access
    @property
    def columns(self) -> list[str]:
        """The column names, in the order of the kind (``anchor, positive[, negative]`` or ``sentence1, sentence2, score``)."""
        return list(self._columns)

    @property
    def num_negatives(self) -> int:
        """Hard negatives per row (0 without a ``negative`` column)."""
        negatives = self._columns.get("negative")
        return len(negatives[0]) if negatives else 0

    def __len__(self) -> int:
        return len(next(iter(self._columns.values())))

    def __repr__(self) -> str:
        return f"PairDataset(kind={self.kind!r}, rows={len(self)}, columns={self.columns}, source={self.source!r})"

    def batch(self, rows) -> Batch:
        """The rows ``rows`` (a sequence of int indices) as a :class:`Batch` with this data set's prompts."""
        rows = [int(i) for i in rows]
        columns = {name: [values[i] for i in rows] for name, values in self._columns.items()}
        if "negative" in columns:
            columns["negative"] = [list(row) for row in columns["negative"]]  # the caller's to change
        return Batch(columns, self.prompts)

    @property
    def fingerprint(self) -> str:
        """A hex digest (16) of the rows: a resumed run checks that it reads the data it started with."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps(self._columns, ensure_ascii=False).encode("utf-8"))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def row_texts(self, i: int) -> set[str]:
        """Every text of row ``i`` (the no-duplicates sampler keeps rows sharing one apart)."""
        texts = {self._columns[c][i] for c in TEXT_COLUMNS[self.kind] if c in self._columns and c != "negative"}
        if "negative" in self._columns:
            texts.update(self._columns["negative"][i])
        return texts


def _parse_row(row: dict, where: str) -> tuple[str, dict]:
    """``(kind, {column: value})`` of one JSON-lines row; ``negative`` always a list."""
    keys = set(row)
    if keys & {"sentence1", "sentence2", "score"} and not keys & {"anchor", "positive"}:
        allowed = set(SCORED)
        missing = [k for k in SCORED if k not in row]
        if missing:
            raise DataFormatError(f"{where}: a scored row must have fields {list(SCORED)}, got {sorted(row)} "
                                  f"(missing {missing}). Add the label or drop the row.")
        unknown = keys - allowed
        if unknown:
            raise DataFormatError(f"{where}: fields must be among {list(SCORED)}, got unknown {sorted(unknown)}.")
        for k in ("sentence1", "sentence2"):
            if not isinstance(row[k], str):
                raise DataFormatError(f"{where}: field {k!r} must be a str, got {type(row[k]).__name__}.")
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataFormatError(f"{where}: field 'score' must be a finite number, got {score!r}.")
        return "scored", {"sentence1": row["sentence1"], "sentence2": row["sentence2"], "score": float(score)}
    missing = [k for k in ("anchor", "positive") if k not in row]
    if missing:
        raise DataFormatError(f"{where}: a row must have fields ['anchor', 'positive'] (contrastive) or "
                              f"{list(SCORED)} (scored), got {sorted(row)} (missing {missing}). "
                              "Add the positive (label) or drop the row.")
    numbered = sorted((k for k in keys if k.startswith("negative_")), key=lambda k: (len(k), k))
    unknown = keys - {"anchor", "positive", "negative"} - {k for k in numbered if k[9:].isdigit()}
    if unknown:
        raise DataFormatError(f"{where}: fields must be among ['anchor', 'positive', 'negative' or 'negative_1', "
                              f"'negative_2', ...], got unknown {sorted(unknown)}.")
    if "negative" in row and numbered:
        raise DataFormatError(f"{where}: negatives must be given as 'negative' or as 'negative_<i>' fields, got both.")
    negatives = row.get("negative", [row[k] for k in numbered])
    if isinstance(negatives, str):
        negatives = [negatives]
    if not isinstance(negatives, list):
        raise DataFormatError(f"{where}: field 'negative' must be a str or a list of str, got "
                              f"{type(negatives).__name__}.")
    for k in ("anchor", "positive"):
        if not isinstance(row[k], str):
            raise DataFormatError(f"{where}: field {k!r} must be a str, got {type(row[k]).__name__}.")
    for j, neg in enumerate(negatives):
        if not isinstance(neg, str):
            raise DataFormatError(f"{where}: negatives must be str, got {type(neg).__name__} at position {j}.")
    return "contrastive", {"anchor": row["anchor"], "positive": row["positive"], "negative": list(negatives)}


def _check_columns(columns: dict, owner: str) -> tuple[str, dict]:
    """The kind and the columns in canonical order, or an error naming what is wrong."""
    keys = set(columns)
    if {"anchor", "positive"} <= keys and keys <= set(CONTRASTIVE):
        kind, order = "contrastive", CONTRASTIVE
    elif keys == set(SCORED):
        kind, order = "scored", SCORED
    elif keys == set(TEXTS):
        kind, order = "texts", TEXTS
    else:
        raise InvalidInputError(f"{owner}: columns must be anchor, positive[, negative] (contrastive), "
                                f"sentence1, sentence2, score (scored) or text (texts), got {sorted(keys)}. "
                                "Rename the columns; a data set without positives or scores has no labels to train on.")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidInputError(f"{owner}: columns must have one length, got {lengths}.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise InvalidInputError(f"{owner}: columns must hold at least one row, got 0. Check the data source.")
    for name in TEXT_COLUMNS[kind]:
        if name == "negative" or name not in columns:
            continue
        bad = next((i for i, t in enumerate(columns[name]) if not isinstance(t, str)), None)
        if bad is not None:
            raise InvalidInputError(f"{owner}: column {name!r} must hold str, got "
                                    f"{type(columns[name][bad]).__name__} at row {bad}.")
    if "negative" in columns:
        negatives = [list(n) if isinstance(n, (list, tuple)) else n for n in columns["negative"]]
        bad = next((i for i, n in enumerate(negatives)
                    if not isinstance(n, list) or not all(isinstance(t, str) for t in n)), None)
        if bad is not None:
            raise InvalidInputError(f"{owner}: column 'negative' must hold a list of str per row, got "
                                    f"{negatives[bad]!r} at row {bad}.")
        counts = {len(n) for n in negatives}
        if len(counts) != 1:
            raise InvalidInputError(f"{owner}: column 'negative' must have one count per row, got counts "
                                    f"{sorted(counts)}. Pad or trim the hard negatives to one count.")
        columns["negative"] = negatives
        if counts == {0}:
            del columns["negative"]
    if kind == "scored":
        bad = next((i for i, s in enumerate(columns["score"]) if isinstance(s, bool)
                    or not isinstance(s, (int, float, np.floating, np.integer)) or not math.isfinite(s)), None)
        if bad is not None:
            raise InvalidInputError(f"{owner}: column 'score' must hold finite numbers, got "
                                    f"{columns['score'][bad]!r} at row {bad}.")
        columns["score"] = [float(s) for s in columns["score"]]
    return kind, {name: list(columns[name]) for name in order if name in columns}


def _check_prompts(prompts, kind: str, columns: list[str], owner: str) -> dict[str, str]:
    prompts = dict(prompts or {})
    allowed = [c for c in TEXT_COLUMNS[kind] if c in columns or (c == "negative" and kind == "contrastive")]
    for column, prompt in prompts.items():
        if column not in allowed:
            raise InvalidInputError(f"{owner}: prompts keys must be among the text columns {allowed}, "
                                    f"got {column!r}.")
        if not isinstance(prompt, str):
            raise InvalidInputError(f"{owner}: prompts[{column!r}] must be a str, got {type(prompt).__name__}.")
    return prompts


# ---------------------------------------------------------------------------------------------- batches
def epoch_plan(dataset: PairDataset, batch_size: int, rng: np.random.Generator, *,
               drop_last: bool = True) -> list[list[int]]:
    """The row indices of every batch of one epoch: a seeded shuffle, then (contrastive data) the greedy
    no-duplicates fill of sentence-transformers' ``NoDuplicatesBatchSampler``: each batch takes the next rows,
    in shuffled order, that share no text with a row already in it; rows skipped wait for a later batch.
    With ``drop_last`` a batch that cannot be filled is dropped (its rows wait for the next epoch)."""
    order = rng.permutation(len(dataset)).tolist()
    if dataset.kind != "contrastive":
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        return [order[i:i + batch_size] for i in range(0, stop, batch_size)]
    texts = [dataset.row_texts(i) for i in range(len(dataset))]
    plan, remaining = [], order
    while remaining:
        batch, seen, rest = [], set(), []
        for k, i in enumerate(remaining):
            if texts[i].isdisjoint(seen):
                batch.append(i)
                seen |= texts[i]
                if len(batch) == batch_size:
                    rest.extend(remaining[k + 1:])
                    break
            else:
                rest.append(i)
        if len(batch) == batch_size or not drop_last:
            plan.append(batch)
        remaining = rest
    return plan


class Batches:
    """Seeded, endless, resumable batches over one or several data sets: an iterator of ``(name, Batch)``.

    ``datasets`` is one :class:`PairDataset` (named ``"default"``) or ``{name: PairDataset}``. Each data set
    runs its own epochs, reshuffled from ``(seed, data set, epoch)``; a batch never mixes two data sets.
    ``sampling`` picks the data set of each step:

    - ``"proportional"``: each round holds every data set's batches of one epoch, in an order shuffled from
      ``(seed, round)``, so a data set is drawn in proportion to its size;
    - ``"round_robin"``: the data sets in turn, in the order given (a small one starts its next epoch sooner);
      ``weights`` (name -> positive int, default 1 each) gives a data set that many consecutive turns per cycle,
      e.g. ``{"documents": 1, "queries": 3}`` draws three query batches for each document batch.

    Iteration never ends: stop after your steps. ``len()`` is the steps of one epoch (proportional: every data
    set's batches of one epoch; round robin: the turns of a cycle times the fewest cycles one epoch of a data set
    fills, as sentence-transformers' ``RoundRobinBatchSampler`` counts). ``prompts`` (column -> prompt) apply to every
    data set with that column, beside each data set's own. ``drop_last=False`` keeps the incomplete batches.

    :meth:`state_dict` is a plain JSON-able dict of the position (the step and each data set's epoch and
    position); :meth:`load_state_dict` makes the iterator continue with exactly the batches that followed.
    """

    def __init__(self, datasets: Mapping[str, PairDataset] | PairDataset, batch_size: int, *, seed: int = 0,
                 sampling: str = "proportional", drop_last: bool = True,
                 prompts: Mapping[str, str] | None = None, weights: Mapping[str, int] | None = None) -> None:
        if isinstance(datasets, PairDataset):
            datasets = {"default": datasets}
        if not isinstance(datasets, Mapping) or not datasets:
            raise InvalidInputError(f"Batches: datasets must be a PairDataset or a non-empty dict of them, got "
                                    f"{type(datasets).__name__ if not isinstance(datasets, Mapping) else 'an empty dict'}.")
        for name, ds in datasets.items():
            if not isinstance(name, str) or not isinstance(ds, PairDataset):
                raise InvalidInputError(f"Batches: datasets must map str names to PairDataset, got "
                                        f"{name!r}: {type(ds).__name__}.")
        self.batch_size = check_int(batch_size, "Batches", "batch_size")
        self.seed = check_int(seed, "Batches", "seed", low=0)
        self.sampling = check_choice(sampling, SAMPLING, "Batches", "sampling")
        if not isinstance(drop_last, bool):
            raise InvalidInputError(f"Batches: drop_last must be a bool, got {drop_last!r}.")
        self.drop_last = drop_last
        self.datasets = dict(datasets)
        self.names = list(self.datasets)
        self.weights = self._check_weights(weights)
        self._cycle = [name for name in self.names for _ in range(self.weights[name])]  # round robin's turns
        prompts = dict(prompts or {})
        used: set[str] = set()
        self._prompts = {}
        for name, ds in self.datasets.items():
            if self.batch_size > len(ds):
                raise InvalidInputError(f"Batches: batch_size must be at most the rows of every data set, got "
                                        f"{self.batch_size} for {name!r} with {len(ds)} rows. "
                                        "Use a smaller batch size or more data.")
            # a prompt applies to the data sets that have its column (an 'anchor' prompt skips scored data sets)
            extra = {c: p for c, p in prompts.items() if c in TEXT_COLUMNS[ds.kind]}
            used.update(extra)
            _check_prompts(extra, ds.kind, ds.columns, "Batches")
            clash = {c for c in extra if c in ds.prompts and ds.prompts[c] != extra[c]}
            if clash:
                raise InvalidInputError(f"Batches: prompts must agree with the data sets' own, got "
                                        f"{ {c: extra[c] for c in clash} } against {name!r}'s "
                                        f"{ {c: ds.prompts[c] for c in clash} }. Set each prompt once.")
            self._prompts[name] = {**extra, **ds.prompts}
        unused = sorted(set(prompts) - used)
        if unused:
            columns = sorted({c for ds in self.datasets.values() for c in TEXT_COLUMNS[ds.kind]})
            raise InvalidInputError(f"Batches: prompts keys must be text columns of the data sets {columns}, got "
                                    f"{unused}.")
        self._plans: dict[tuple[str, int], list[list[int]]] = {}
        self._rounds: dict[int, list[str]] = {}
        for name in self.names:
            if not self._plan(name, 0):
                raise InvalidInputError(f"Batches: batch_size must allow one batch of rows without a shared text, "
                                        f"got {self.batch_size} for {name!r}, whose rows share too many texts. "
                                        "Use a smaller batch size or deduplicate the data.")
        self.step = 0
        self._streams = {name: [0, 0] for name in self.names}  # name -> [epoch, position in that epoch]
        self._cursor = [0, 0]  # proportional: [round, position in that round]

    def _check_weights(self, weights: Mapping[str, int] | None) -> dict[str, int]:
        if weights is None:
            return {name: 1 for name in self.names}
        if self.sampling != "round_robin":
            raise InvalidInputError(f"Batches: weights apply to sampling='round_robin', got sampling="
                                    f"{self.sampling!r}. Drop weights or use round robin.")
        if not isinstance(weights, Mapping) or set(weights) != set(self.names):
            got = sorted(weights) if isinstance(weights, Mapping) else type(weights).__name__
            raise InvalidInputError(f"Batches: weights must name every data set {self.names} once, got {got}.")
        return {name: check_int(weights[name], "Batches", f"weights[{name!r}]") for name in self.names}

    # ------------------------------------------------------------------ plans
    def _plan(self, name: str, epoch: int) -> list[list[int]]:
        key = (name, epoch)
        if key not in self._plans:
            for old in [k for k in self._plans if k[0] == name and k[1] < epoch]:
                del self._plans[old]  # epochs only move forward
            rng = np.random.default_rng([self.seed, 0, self.names.index(name), epoch])
            self._plans[key] = epoch_plan(self.datasets[name], self.batch_size, rng, drop_last=self.drop_last)
        return self._plans[key]

    def _round(self, r: int) -> list[str]:
        if r not in self._rounds:
            self._rounds = {}
            order = [name for name in self.names for _ in self._plan(name, r)]
            rng = np.random.default_rng([self.seed, 1, r])
            self._rounds[r] = [order[i] for i in rng.permutation(len(order))]
        return self._rounds[r]

    def _next_name(self) -> str:
        if self.sampling == "round_robin":
            return self._cycle[self.step % len(self._cycle)]
        # proportional: round r holds each data set's batches of its epoch r, so streams stay at epoch r
        while self._cursor[1] >= len(self._round(self._cursor[0])):
            self._cursor = [self._cursor[0] + 1, 0]
        name = self._round(self._cursor[0])[self._cursor[1]]
        self._cursor[1] += 1
        return name

    def __len__(self) -> int:
        counts = {name: len(self._plan(name, 0)) for name in self.names}
        if self.sampling == "proportional":
            return sum(counts.values())
        return len(self._cycle) * max(1, min(counts[name] // self.weights[name] for name in self.names))

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[tuple[str, Batch]]:
        return self

    def __next__(self) -> tuple[str, Batch]:
        name = self._next_name()
        stream = self._streams[name]
        while stream[1] >= len(self._plan(name, stream[0])):  # (an epoch can, in theory, have no full batch)
            stream[0], stream[1] = stream[0] + 1, 0
        rows = self._plan(name, stream[0])[stream[1]]
        stream[1] += 1
        self.step += 1
        batch = self.datasets[name].batch(rows)
        batch.prompts = dict(self._prompts[name])
        return name, batch

    def model_prompts(self) -> dict[str, str]:
        """The prompts to save with a model trained on these batches, by name: an ``anchor`` prompt as
        ``"query"``, ``positive`` / ``negative`` as ``"document"``, ``sentence1`` / ``sentence2`` as ``"sentence"``
        (:data:`PROMPT_NAMES`). A prompt that disagrees with one already under its name keeps its column's name
        (``"negative"``), then ``"<data set>.<column>"``: every prompt trained with is saved under one name."""
        out: dict[str, str] = {}
        for name in self.names:
            for column, text in self._prompts[name].items():
                for key in (PROMPT_NAMES[column], column, f"{name}.{column}"):
                    if out.setdefault(key, text) == text:
                        break
        return out

    def epoch(self, name: str | None = None) -> int:
        """The epoch (0-based) of data set ``name`` (default: the first) that the next batch of it comes from."""
        name = self.names[0] if name is None else name
        if name not in self._streams:
            raise InvalidInputError(f"Batches.epoch: name must be one of {self.names}, got {name!r}.")
        epoch, pos = self._streams[name]
        return epoch + (pos >= len(self._plan(name, epoch)))

    # ------------------------------------------------------------------ resuming
    def _config(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "sampling": self.sampling, "weights": self.weights,
                "drop_last": self.drop_last, "datasets": {name: {"rows": len(ds), "fingerprint": ds.fingerprint}
                             for name, ds in self.datasets.items()}}

    def state_dict(self) -> dict:
        """The exact data position, as a JSON-able dict: ``{"format_version", "step", "round": {"index", "position"},
        "streams": {name: {"epoch", "position"}}, "config": {...}}`` (the config is checked on load)."""
        return {"format_version": STATE_VERSION, "step": self.step,
                "round": {"index": self._cursor[0], "position": self._cursor[1]},
                "streams": {name: {"epoch": e, "position": p} for name, (e, p) in self._streams.items()},
                "config": self._config()}

    def load_state_dict(self, state: Mapping) -> "Batches":
        """Continue from a :meth:`state_dict` of batches built with the same data sets, batch size, seed,
        sampling and ``drop_last``; returns ``self``."""
        if not isinstance(state, Mapping) or state.get("format_version") != STATE_VERSION:
            got = state.get("format_version") if isinstance(state, Mapping) else type(state).__name__
            raise InvalidInputError(f"Batches.load_state_dict: state must be a Batches.state_dict() of format "
                                    f"version {STATE_VERSION}, got {got!r}.")
        config = self._config()
        if state.get("config") != config:
            raise InvalidInputError(f"Batches.load_state_dict: state must come from batches with the same "
                                    f"config {config}, got {state.get('config')}. Resume with the run's own data "
                                    "and settings.")
        owner = "Batches.load_state_dict"
        try:
            streams, cursor = state["streams"], state["round"]
            self._streams = {name: [check_int(streams[name]["epoch"], owner, "epoch", low=0),
                                    check_int(streams[name]["position"], owner, "position", low=0)]
                             for name in self.names}
            self._cursor = [check_int(cursor["index"], owner, "round index", low=0),
                            check_int(cursor["position"], owner, "round position", low=0)]
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"{owner}: state must hold 'round' and 'streams' for every data set, got "
                                    f"none for {exc}.") from None
        self.step = check_int(state.get("step"), owner, "step", low=0)
        return self
