"""The faiss indexes behind a collection: IVF trains once, at the add that reaches train_size, with seed=."""

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index.search.faiss_backends import IVF_SEED, IVFIndex


def _ivf(seed=None, train_size=400):
    params = {"nlist": 8, "train_size": train_size, **({} if seed is None else {"seed": seed})}
    return IVFIndex.create(16, "ip", IVFIndex.check_params(params, "test"), lambda: None)


def test_ivf_trains_once_at_the_documented_point_with_its_seed(rng):
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    index = _ivf(seed=7)
    index.add(x[:300])
    assert not index.trained  # below train_size: an exact flat scan
    index.add(x[300:500])
    assert index.trained and index.ntotal == 500
    centroids = index.index.quantizer.reconstruct_n(0, 8)
    index.add(x[500:])  # later adds are assigned to the lists, never retrained
    np.testing.assert_array_equal(index.index.quantizer.reconstruct_n(0, 8), centroids)
    again = _ivf(seed=7)
    again.add(x[:500])
    np.testing.assert_array_equal(again.index.quantizer.reconstruct_n(0, 8), centroids)
    other = _ivf(seed=8)
    other.add(x[:500])
    assert not np.array_equal(other.index.quantizer.reconstruct_n(0, 8), centroids)


def test_ivf_seed_is_an_index_parameter():
    assert IVFIndex.check_params({}, "test")["seed"] == IVF_SEED
    with pytest.raises(InvalidInputError, match=r"test: seed must be an int >= 0, got -1"):
        IVFIndex.check_params({"seed": -1}, "test")
