"""Length-sorted, token-budget batches: texts (or text pairs) in, padded model inputs (int64 arrays ``[b, t]``) out.

Texts are sorted by character length (a ``(text, text)`` pair, tokenised as one input, by their sum), tokenised a chunk at a time (never the whole corpus at once),
re-sorted by token count inside the chunk, and cut into batches of at most ``batch_size`` rows and
``max_tokens`` padded tokens (rows x the batch's longest row): greedily when ``batch_size`` is given, and by
:func:`length_groups` (the split with the fewest padded tokens plus a fixed cost per forward call) when only
``max_tokens`` bounds them. Short texts share big batches and long ones small ones, so padding stays small.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.params import check_int

CHUNK_BATCHES = 16  # texts are tokenised this many batches at a time: bounded memory, one tokenizer pass
CHUNK_TEXTS = 4096  # ... and at least this many texts, so token-budget batches can grow past batch_size
GROUP_COST = 64  # padded tokens one more forward call is worth (its fixed cost on CPU), for length groups

Batch = tuple[np.ndarray, dict[str, np.ndarray]]
"""``(rows, features)``: the input positions of the batch (int64 ``[b]``) and its padded inputs (int64 ``[b, t]``)."""


def token_batches(
    tokenizer,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    *,
    max_length: int,
    batch_size: int | None,
    max_tokens: int | None,
    owner: str,
    special_mask: bool = False,
    on_truncated: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Batches of ``texts`` (checked here, so a bad limit fails before any work; ``owner`` names the caller).

    ``texts`` may instead be ``(text, text_pair)`` tuples, each tokenised as one pair input (a cross-encoder's
    ``[CLS] query [SEP] document [SEP]``, with ``token_type_ids``); a pair longer than ``max_length`` loses
    tokens from its longer side first. ``batch_size`` and/or ``max_tokens`` bound each batch (either may be None,
    not both). Every text is truncated to ``max_length`` tokens; ``on_truncated(n)`` hears how many were, per chunk with any.
    ``special_mask`` adds ``special_tokens_mask`` (1 for special and padding tokens) to the features.
    """
    check_int(batch_size, owner, "batch_size", allow_none=True)
    check_int(max_tokens, owner, "max_tokens", allow_none=True)
    if batch_size is None and max_tokens is None:
        raise InvalidInputError(
            f"{owner}: batch_size and max_tokens must not both be None, got None for both. "
            "Bound the batch by texts (batch_size=64) or by padded tokens (max_tokens=8192)."
        )
    return _batches(tokenizer, list(texts), max_length, batch_size, max_tokens, special_mask, on_truncated)


def _batches(tokenizer, texts: list[str], max_length: int, batch_size: int | None, max_tokens: int | None,
             special_mask: bool, on_truncated: Callable[[int], None] | None) -> Iterator[Batch]:
    order = np.argsort([-(len(t) if isinstance(t, str) else len(t[0]) + len(t[1])) for t in texts], kind="stable")
    pad_id = tokenizer.pad_token_id or 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    chunk = max(CHUNK_TEXTS, (batch_size or 0) * CHUNK_BATCHES)
    for start in range(0, len(texts), chunk):
        rows_chunk = order[start : start + chunk]
        enc = tokenizer([texts[i] for i in rows_chunk], truncation=True, max_length=max_length,
                        return_special_tokens_mask=special_mask)
        if on_truncated is not None and getattr(enc, "encodings", None):
            n = sum(1 for e in enc.encodings if e.overflowing)
            if n:
                on_truncated(n)
        lengths = np.array([len(ids) for ids in enc["input_ids"]])
        for sel in _cut(lengths, batch_size, max_tokens):
            width = int(lengths[sel].max())
            features = {}
            for key, values in enc.items():
                fill = pad_id if key == "input_ids" else (1 if key == "special_tokens_mask" else 0)
                features[key] = _pad([values[i] for i in sel], width, fill, left)
            yield rows_chunk[sel], features


def _cut(lengths: np.ndarray, batch_size: int | None, max_tokens: int | None) -> list[np.ndarray]:
    """Row indices of each batch: :func:`length_groups` under ``max_tokens`` when only that bounds the batches,
    else greedy from the longest row."""
    if batch_size is None:
        return [np.asarray(g) for g in length_groups(lengths, int(lengths.max()), max_tokens=max_tokens)]
    by_len = np.argsort(-lengths, kind="stable")
    out, b = [], 0
    while b < len(by_len):
        width = max(int(lengths[by_len[b]]), 1)
        n = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // width))
        out.append(by_len[b : b + n])
        b += n
    return out


def length_groups(lengths: Sequence[int], width: int, *, cost: int = GROUP_COST,
                  max_tokens: int | None = None) -> list[list[int]]:
    """Rows (by index) cut into groups of similar length that minimise the padded tokens of running each group
    apart, ``sum(len(group) * longest row in it)``, plus ``cost`` per group; exact (dynamic programming over the
    rows sorted by length), groups in ascending length, each in ascending length. ``max_tokens`` caps a group's
    padded tokens (a row longer than the cap runs alone). One group ``[0, 1, ...]`` when nothing beats a single
    pass over ``width`` columns (and the cap allows it)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    sorted_len = np.asarray(lengths, dtype=np.int64)[order]
    n = len(order)
    best = np.zeros(n + 1)  # best[j]: the cheapest split of the j shortest rows
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):  # the last group is rows i..j-1 (sorted), its width the length of row j-1
        i = np.arange(j)
        padded = (j - i) * sorted_len[j - 1]
        total = best[:j] + padded + cost
        if max_tokens is not None:
            total[(padded > max_tokens) & (i < j - 1)] = np.inf
        start[j] = int(np.argmin(total))
        best[j] = total[start[j]]
    if best[n] >= n * width + cost and (max_tokens is None or n * width <= max_tokens):
        return [list(range(n))]
    groups, j = [], n
    while j > 0:
        groups.append(order[start[j]:j].tolist())
        j = start[j]
    return groups[::-1]


def run_grouped(features: dict, run: Callable, *, per_token: bool = False, right_padded: bool = True):
    """``run`` over the rows of ``features`` (tensors ``[b, t]``) in :func:`length_groups`, each group's columns
    trimmed to its longest row, the outputs put back in row order (``per_token``: ``[b, t, ...]`` outputs, padded
    back to ``t``): the result of one ``run(features)``, up to float rounding, for less padded compute.
    Right padding only (``right_padded=False`` runs one pass: trimming would shift left-padded positions)."""
    import torch

    mask = features["attention_mask"]
    if not right_padded:
        return run(features)
    lengths = mask.sum(dim=1).tolist()
    groups = length_groups(lengths, mask.shape[1])
    if len(groups) == 1:
        return run(features)
    width, outputs = mask.shape[1], []
    for rows in groups:
        index = torch.as_tensor(rows, device=mask.device)
        n = int(max(lengths[i] for i in rows))
        out = run({k: v[index][:, :n] for k, v in features.items()})
        if per_token and n < width:
            pad = torch.zeros(len(rows), width - n, *out.shape[2:], dtype=out.dtype, device=out.device)
            out = torch.cat([out, pad], dim=1)
        outputs.append(out)
    order = torch.as_tensor([r for rows in groups for r in rows], device=mask.device)
    return torch.cat(outputs)[torch.argsort(order)]


def _pad(rows: list[list[int]], width: int, fill: int, left: bool) -> np.ndarray:
    """``rows`` (token lists, each at most ``width`` long) as int64 ``[len(rows), width]``, padded with ``fill``."""
    arr = np.full((len(rows), width), fill, dtype=np.int64)
    for j, v in enumerate(rows):
        if left:
            arr[j, width - len(v):] = v
        else:
            arr[j, : len(v)] = v
    return arr
