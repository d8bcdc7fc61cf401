"""The same pipeline on a real local Ray cluster (2 CPUs, loopback only): the same shards as in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.scale import encode_corpus, read_shards
from tests.scale.test_encode import wordnet_slice, write_jsonl

ray = pytest.importorskip("ray")  # the scale extra; `make test` installs it


@pytest.fixture(scope="module")
def cluster():
    from embedlab.scale.ray_encode import start_local

    start_local(num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_shards_match_in_process_encoding_on_loopback(cluster, encoder, data_dir, tmp_path):
    addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
    assert addresses == {"127.0.0.1"}, addresses  # tests talk to loopback only
    rows = wordnet_slice(data_dir, 90)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    result = encode_corpus(encoder, corpus, tmp_path / "ray", shard_size=32, ray="local")
    assert result["encoded_shards"] == 3 and ray.is_initialized()  # the cluster it found is left running
    encode_corpus(encoder, corpus, tmp_path / "local", shard_size=32)
    ids_ray, vec_ray = zip(*[(p[0], p[1]) for p in read_shards(tmp_path / "ray")])
    ids_local, vec_local = zip(*[(p[0], p[1]) for p in read_shards(tmp_path / "local")])
    assert ids_ray == ids_local
    cosine = (np.concatenate(vec_ray) * np.concatenate(vec_local)).sum(1)
    assert cosine.min() >= 0.99999
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["model"]["fingerprint"] == encoder.fingerprint
