"""The reliability workloads (``reliability.py`` beside this file, shared with ``benchmarks/reliability.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reliability():
    spec = importlib.util.spec_from_file_location("collection_reliability", Path(__file__).with_name("reliability.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
