"""The vector checks every collection write and search goes through: finiteness, zero rows, cosine normalisation
in float32 with a float64 redo where the float32 sum of squares under- or overflows."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index.collection.inputs import check_vectors, prepare_vectors


def test_unit_rows_come_back_unchanged_and_others_are_normalised(rng):
    x = rng.normal(size=(50, 16)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert prepare_vectors(unit, "cosine", "t") is unit
    np.testing.assert_allclose(prepare_vectors(3 * x, "cosine", "t"), unit, rtol=1e-6, atol=1e-7)
    assert prepare_vectors(x, "ip", "t") is x and prepare_vectors(x, "l2", "t") is x  # only cosine rescales


@pytest.mark.parametrize("scale", [1e-30, 1e25])
def test_rows_whose_float32_sum_of_squares_under_or_overflows_still_normalise(rng, scale):
    x = rng.normal(size=(4, 16)).astype(np.float32)
    x[1] *= np.float32(scale)  # its squares are 0 (1e-60) or inf (1e50) in float32
    out = prepare_vectors(x, "cosine", "t")
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], x[1].astype(np.float64) / np.linalg.norm(x[1].astype(np.float64)), rtol=1e-5)


def test_a_zero_row_is_rejected_for_cosine_only(rng):
    x = rng.normal(size=(3, 8)).astype(np.float32)
    x[2] = 0
    with pytest.raises(InvalidInputError, match="queries must be non-zero for cosine, got an all-zero row 2"):
        prepare_vectors(x, "cosine", "t", "queries")
    assert prepare_vectors(x, "ip", "t") is x


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_first_non_finite_row_is_named(rng, bad):
    x = rng.normal(size=(5, 8)).astype(np.float32)
    x[3, 5] = bad
    x[4, 0] = bad
    with pytest.raises(InvalidInputError, match="vectors must be finite, got NaN or inf in row 3"):
        check_vectors(x, 5, 8, "t")
    assert check_vectors(x[:3], 3, 8, "t").dtype == np.float32
