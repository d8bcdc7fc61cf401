"""Shared fixtures: one encoder per test session, paths to the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property tests: a bounded, reproducible run by default; EMBEDLAB_HYPOTHESIS=soak (benchmarks/reliability.py) for long.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None)
settings.register_profile("soak", max_examples=1000, deadline=None, database=None)
settings.load_profile(os.environ.get("EMBEDLAB_HYPOTHESIS", "ci"))

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"tests read the shared data sets from {DATA}; it is missing"
    return DATA


_LOADED: dict = {}  # (model, options) -> Encoder: each model is loaded once per test session


def _load_key(path, options: dict, defaults: dict):
    options = {k: v for k, v in options.items() if v is not None and defaults.get(k) != v}
    return (None if path is None else str(path), tuple(sorted(options.items())))


@pytest.fixture(scope="session")
def encoder():
    from embedlab.models import Encoder

    model = Encoder.load()
    _LOADED[(None, ())] = _LOADED[(str(model.source), ())] = model
    return model


@pytest.fixture(scope="session")
def cross_encoder():
    """The default model's weights with a seeded classification head, as a CrossEncoder (loaded once)."""
    from embedlab.models import CrossEncoder

    return CrossEncoder.load(None, max_length=128)


@pytest.fixture(scope="session")
def reference(encoder):
    """The default model loaded by sentence-transformers: the reference our vectors are compared with."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(encoder.source, device="cpu")


@pytest.fixture
def one_model_load(encoder, monkeypatch):
    """``Encoder.load`` answers repeated loads of one model and options with the encoder loaded first, so that
    in-process CLI runs, collections and README blocks do not reload torch weights per call."""
    import inspect

    from embedlab.models import Encoder

    real = Encoder.load.__func__
    defaults = {name: p.default for name, p in inspect.signature(real).parameters.items()
                if p.default is not inspect.Parameter.empty}

    def load(cls, path=None, **options):
        key = _load_key(path, options, defaults)
        if key not in _LOADED:
            _LOADED[key] = real(cls, path, **options)
        return _LOADED[key]

    monkeypatch.setattr(Encoder, "load", classmethod(load))


@pytest.fixture
def cli(one_model_load):
    """Run ``embedlab ARGS...`` in-process (typer's CliRunner): ``cli("eval", "sts", ...)`` -> a click Result with
    ``exit_code``, ``stdout`` and ``stderr``."""
    from typer.testing import CliRunner

    from embedlab.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


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
