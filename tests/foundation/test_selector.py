"""The one faiss bitmap selector: it owns its bitmap, so a filtered search never leaks other rows."""

import gc

import faiss
import numpy as np

from embedlab.selector import BitmapSelector


def test_filtered_search_returns_only_allowed_rows_after_garbage_collection():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    index = faiss.IndexFlatIP(8)
    index.add(x)
    allowed = BitmapSelector.of_rows(np.arange(0, 500, 7), 500)
    params = allowed.params()
    gc.collect()  # the packed bitmap must survive: faiss holds only a raw pointer to it
    _, labels = index.search(x[:20], 10, params=params)
    assert allowed.count == len(allowed.rows) == 72
    assert np.all(labels % 7 == 0)


def test_params_forward_search_fields():
    allowed = BitmapSelector(np.array([True, False, True]))
    params = allowed.params(faiss.SearchParametersHNSW, efSearch=33)
    assert params.efSearch == 33 and allowed.rows.tolist() == [0, 2]
