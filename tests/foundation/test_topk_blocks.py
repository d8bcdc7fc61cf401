"""topk_blocks: a block-by-block scan gives exactly topk over all columns side by side."""

import numpy as np
import pytest

from embedlab.topk import topk, topk_blocks


@pytest.mark.parametrize("k", [1, 5, 40])
def test_blocks_with_offsets_or_positions_equal_one_topk(k):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=(9, 103)).astype(np.float32)  # ties across blocks
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    want = topk(scores, k)
    cuts = list(range(0, 103, 10))
    by_offset = topk_blocks(((scores[:, c : c + 10], c) for c in cuts), 9, k)
    positions = np.broadcast_to(np.arange(103), scores.shape)
    by_position = topk_blocks(((scores[:, c : c + 10], positions[:, c : c + 10]) for c in cuts), 9, k)
    for got in (by_offset, by_position):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_no_blocks_is_all_padding():
    s, p = topk_blocks(iter(()), 2, 3)
    assert (p == -1).all() and np.isneginf(s).all()
