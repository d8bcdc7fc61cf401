"""Length groups in the differentiable forward: an exact split (checked against brute force), and the same
embeddings, token vectors and gradients as one padded pass."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embedlab.models import Encoder
from embedlab.models.batching import length_groups

TEXTS = ["a", "the dog runs in the park every single morning before the sun rises over the hills", "hello world",
         "cat", "a big old house with a red door and a small garden behind it", "tree", "we", "blue green"]


def _cost(lengths, groups, cost):
    return sum(len(g) * max(lengths[i] for i in g) + cost for g in groups)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=7), st.integers(0, 50))
def test_groups_partition_the_rows_at_the_least_cost(lengths, cost):
    width = max(lengths)
    groups = length_groups(lengths, width, cost=cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    # brute force over contiguous splits of the rows sorted by length (an optimal split is one of them)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = min(_cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], cost)
               for r in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), r))
    assert _cost(lengths, groups, cost) == best


def test_one_group_when_splitting_does_not_pay():
    assert length_groups([5, 5, 5], 5) == [[0, 1, 2]]
    assert length_groups([1, 30], 30, cost=10**6) == [[0, 1]]
    assert length_groups([1, 1, 1, 1, 60, 60], 60, cost=8) == [[0, 1, 2, 3], [4, 5]]


def test_left_padding_runs_as_one_pass(encoder):
    encoder.tokenizer.padding_side = "left"
    try:
        features = encoder.tokenize(TEXTS)
        with torch.no_grad():
            assert torch.equal(encoder.forward(features), encoder.runtime.forward(features))
    finally:
        encoder.tokenizer.padding_side = "right"


def test_grouped_forward_equals_one_padded_pass_with_its_gradients(encoder):
    features = encoder.tokenize(TEXTS)
    runtime = encoder.runtime
    assert len(length_groups(features["attention_mask"].sum(1).tolist(), features["attention_mask"].shape[1])) > 1
    params = [p for p in encoder.model.parameters() if p.requires_grad][:4] + \
             [encoder.model.embeddings.word_embeddings.weight]
    grouped = encoder.forward(features)
    g1 = torch.autograd.grad(grouped.square().sum(), params)
    single = runtime.forward(features)  # the same model, one pass over the padded batch
    g2 = torch.autograd.grad(single.square().sum(), params)
    torch.testing.assert_close(grouped, single, atol=2e-5, rtol=1e-4)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    tokens = encoder.forward_tokens(features)
    hidden = runtime.hidden_states(features)
    mask = features["attention_mask"].bool()
    torch.testing.assert_close(tokens[mask], hidden[mask], atol=2e-5, rtol=1e-4)
    assert tokens.shape == hidden.shape


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=7), st.integers(0, 50), st.integers(1, 120))
def test_a_token_cap_bounds_every_group_and_the_split_stays_optimal(lengths, cost, cap):
    groups = length_groups(lengths, max(lengths), cost=cost, max_tokens=cap)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) == 1 or len(g) * max(lengths[i] for i in g) <= cap for g in groups)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    feasible = []
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        split, cur = [], [order[0]]
        for cut, i in zip(cuts, order[1:]):
            if cut:
                split.append(cur)
                cur = []
            cur.append(i)
        split.append(cur)
        if all(len(g) == 1 or len(g) * max(lengths[i] for i in g) <= cap for g in split):
            feasible.append(_cost(lengths, split, cost))
    assert _cost(lengths, groups, cost) == min(feasible)


def test_token_budget_batches_follow_the_length_groups(encoder):
    from embedlab.models.batching import token_batches

    texts = ["a"] * 6 + ["a long text " * 12] * 2
    batches = list(token_batches(encoder.tokenizer, texts, max_length=256, batch_size=None, max_tokens=4096,
                                 owner="test"))
    assert sorted(len(rows) for rows, _ in batches) == [2, 6]  # not one batch padded to the long rows
    assert sorted(r for rows, _ in batches for r in rows.tolist()) == list(range(8))
    import numpy as np

    np.testing.assert_allclose(encoder.encode(texts, batch_size=None, max_tokens=4096),
                               encoder.encode(texts, batch_size=64), atol=1e-5)
