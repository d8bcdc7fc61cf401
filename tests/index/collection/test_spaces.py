"""Which encoders a collection accepts: its own space, an aligned one for queries only (its map applied), and a
clear refusal for anything else."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import ConflictError, InvalidInputError
from embedlab.index import Collection
from embedlab.models import Encoder
from embedlab.models.alignment import Alignment

_spec = importlib.util.spec_from_file_location("_models_conftest",
                                               Path(__file__).parents[2] / "models" / "conftest.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
TEXTS = [" ".join(p) for p in itertools.permutations(_models.WORDS[:8], 3)][:60]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("spaces")
    old = Encoder.load(_models._tiny_bert(root / "old", seed=0))
    other = Encoder.load(_models._tiny_bert(root / "other", seed=1))
    return old, other


@pytest.fixture
def built(models, tmp_path):
    old, _ = models
    collection = Collection.create(tmp_path / "c", dim=old.dim, index="flat", encoder=old)
    collection.add([f"d{i}" for i in range(len(TEXTS))], texts=TEXTS)
    collection.close()
    return tmp_path / "c"


def test_the_manifest_records_the_space_and_the_same_model_is_accepted(models, built):
    old, _ = models
    with Collection.open(built, encoder=Encoder.load(old.source)) as c:
        assert c._manifest["space"] == old.space
        assert c.search(TEXTS[:1], k=1).ids[0, 0] == "d0"
        c.add(["extra"], texts=["the dog"])  # the collection's own model may store documents


def test_an_unrelated_model_is_refused_naming_both(models, built):
    old, other = models
    with pytest.raises(ConflictError, match=rf"space of the collection's model '{old.source}' .*got "
                                            rf"'{other.source}' .*records no alignment.*allow_foreign_encoder=True"):
        Collection.open(built, encoder=other)
    with Collection.open(built, encoder=other, allow_foreign_encoder=True) as c:  # the user's explicit choice
        assert c.search(TEXTS[:1], k=3).ids.shape == (1, 3)


def test_an_aligned_model_searches_with_its_map_but_cannot_store(models, built):
    old, other = models
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(old.dim, other.dim)).astype(np.float32), rng.normal(size=old.dim).astype(np.float32)
    other.alignment = Alignment(old.space, old.source, "ridge", weight, bias)
    try:
        with Collection.open(built, encoder=other) as c:
            hits = c.search(TEXTS[:3], k=5)
            mapped = other.alignment.apply(other.encode(TEXTS[:3]))
            expect = c.search(mapped, k=5)
            np.testing.assert_array_equal(hits.ids, expect.ids)
            with pytest.raises(ConflictError, match="for queries only"):
                c.add(["x"], texts=["the cat"])
            assert c.count() == len(TEXTS)  # nothing was stored
        other.alignment = Alignment(old.space, old.source, "ridge", weight[:16], bias[:16])
        with pytest.raises(InvalidInputError, match="dim=32 vectors after its alignment map, got an encoder of width 16"):
            Collection.open(built, encoder=other)
        other.alignment = Alignment("another-space", "elsewhere", "distilled")
        with pytest.raises(ConflictError, match="is aligned to 'elsewhere'"):
            Collection.open(built, encoder=other)
    finally:
        other.alignment = None


def test_a_changed_model_folder_is_noticed(models, built, tmp_path):
    import shutil

    old, _ = models
    moved = tmp_path / "model"
    shutil.copytree(old.source, moved)
    c = Collection.open(built, encoder=Encoder.load(moved))  # the same files elsewhere: the same space
    c.close()
    manifest_file = built / "manifest.json"
    import json

    manifest = json.loads(manifest_file.read_text())
    manifest["encoder"] = str(moved)
    manifest_file.write_text(json.dumps(manifest))
    (moved / "config.json").write_text((moved / "config.json").read_text().replace('"hidden_act"', '"hidden_act" '))
    with Collection.open(built) as c:
        with pytest.raises(ConflictError, match="files changed"):
            c.search(TEXTS[:1], k=1)
