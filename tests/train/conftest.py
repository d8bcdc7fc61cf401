"""Fixtures for the training tests: tiny random BERTs (the builder of tests/models/conftest.py, imported by path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from embedlab.models import Encoder

_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).parent.parent / "models" / "conftest.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
tiny_bert_builder = _models._tiny_bert
WORDS = _models.WORDS


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    """A 2-layer, 32-d random BERT folder (seed 0)."""
    return tiny_bert_builder(tmp_path_factory.mktemp("train-tiny") / "model")


@pytest.fixture(scope="session")
def guide_path(tmp_path_factory):
    """Another tiny BERT (seed 1), for a guide that differs from the trained model."""
    return tiny_bert_builder(tmp_path_factory.mktemp("train-guide") / "model", seed=1)


@pytest.fixture
def tiny_encoder(tiny_path):
    """A fresh encoder over the tiny BERT, in eval mode (no dropout) so passes are deterministic."""
    encoder = Encoder.load(tiny_path)
    encoder.model.eval()
    return encoder
