"""Shared fixtures: one encoder per test session, paths to the shared data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"tests read the shared data sets from {DATA}; it is missing"
    return DATA


@pytest.fixture(scope="session")
def encoder():
    from embedlab.models import Encoder

    return Encoder.load()


@pytest.fixture(scope="module")
def one_faiss_thread():
    """faiss's OpenMP k-means is ~10x slower with 2 threads on a busy 2-core machine: use one, then restore."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
