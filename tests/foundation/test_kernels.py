"""The shared kernels: top-k, atomic write, parameter validation."""

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.files import atomic_write, replacing
from embedlab.params import check_choice, check_int
from embedlab.topk import SORT_BELOW, topk


def _reference(scores, positions, k):
    out = []
    for s_row, p_row in zip(scores, positions):
        pairs = sorted((-s, p) for s, p in zip(s_row, p_row) if p >= 0 and s > -np.inf)
        pairs = pairs[:k] + [(np.inf, -1)] * (k - len(pairs[:k]))
        out.append(pairs)
    return (np.array([[-s for s, _ in r] for r in out], dtype=np.float32),
            np.array([[p for _, p in r] for r in out], dtype=np.int64))


@pytest.mark.parametrize("n", [12, SORT_BELOW + 88])  # the whole-sort path and the partition path
@pytest.mark.parametrize("k", [1, 3, 7, 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # faiss's heap, numpy's argpartition
@pytest.mark.parametrize("levels", [4, 1 << 20])  # many ties, few
def test_topk_matches_a_sorted_reference_with_ties_and_padding(k, n, dtype, levels):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, levels, size=(50, n)).astype(dtype)
    positions = rng.permutation(np.arange(50 * n)).reshape(50, n)
    positions[rng.random((50, n)) < 0.1] = -1
    scores[rng.random((50, n)) < 0.1] = -np.inf
    got_s, got_p = topk(scores, k, positions)
    ref_s, ref_p = _reference(scores, positions, k)
    np.testing.assert_array_equal(got_p, ref_p)
    np.testing.assert_array_equal(got_s, ref_s)
    assert got_s.dtype == np.float32 and got_p.dtype == np.int64


def test_topk_default_positions_break_ties_by_lower_column():
    s, p = topk(np.array([[1.0, 2.0, 2.0, 2.0, 0.0]]), 2)
    assert p.tolist() == [[1, 2]] and s.tolist() == [[2.0, 2.0]]


def test_topk_nan_is_padding():
    s, p = topk(np.array([[np.nan, 1.0]]), 2)
    assert p.tolist() == [[1, -1]] and s[0, 1] == -np.inf
    wide = np.full((2, SORT_BELOW + 5), np.nan, dtype=np.float32)  # the heap path: NaN never enters it
    wide[0, [3, 7]] = [0.5, -np.finfo(np.float32).max]
    wide[1, :] = -np.inf
    s, p = topk(wide, 3)
    assert p.tolist() == [[3, 7, -1], [-1, -1, -1]] and s[0, 1] == -np.finfo(np.float32).max
    assert np.isneginf(s[0, 2]) and np.isneginf(s[1]).all()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_replacing_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_replacing_swaps_a_whole_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with replacing(folder) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_check_int_messages():
    assert check_int(3, "X.f", "k") == 3
    assert check_int(None, "X.f", "k", allow_none=True) is None
    with pytest.raises(InvalidInputError, match=r"X.f: k must be a positive int, got True\."):
        check_int(True, "X.f", "k")
    with pytest.raises(InvalidInputError, match=r"must be an int >= 0 or None, got -1\. Use 0"):
        check_int(-1, "X.f", "n", low=0, allow_none=True, hint="Use 0")
    with pytest.raises(InvalidInputError, match=r"must be an int in \[1, 10\], got 11"):
        check_int(11, "X.f", "k", high=10)


def test_check_choice_lists_the_valid_values():
    assert check_choice("ip", ("ip", "l2"), "X.f", "metric") == "ip"
    with pytest.raises(InvalidInputError, match=r"X.f: metric must be one of \['ip', 'l2'\], got 'cos'\."):
        check_choice("cos", ("ip", "l2"), "X.f", "metric")
