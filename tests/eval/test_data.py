"""BEIR and STS loaders: real files, both qrels formats, and malformed input naming file and line."""

from __future__ import annotations

import json

import pytest

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.eval import load_beir, load_sts


def test_limit_small_reads_json_lines_qrels(data_dir):
    ds = load_beir(data_dir / "limit-small")
    assert len(ds.corpus_ids) == 46 and ds.splits == ["test"]
    ids, texts, qrels = ds.split("test")
    assert len(ids) == 1000 and all(len(rel) == 2 for rel in qrels.values())
    assert texts[0].startswith("Who likes")


def test_wordnet_reads_tsv_qrels_and_metadata(data_dir):
    ds = load_beir(data_dir / "wordnet-beir")
    assert len(ds.corpus_ids) == 117_659
    assert ds.splits == ["dev", "test", "train"]
    assert set(ds.metadata[0]) == {"pos", "domain", "n_lemmas", "n_examples"}
    ids, _, qrels = ds.split("test")
    assert len(qrels) == len(ids) > 4000


def test_sts_test_split(data_dir):
    pairs = load_sts(data_dir / "stsbenchmark", "test")
    assert len(pairs) == 1379
    assert pairs[0].sentence1 == "A girl is styling her hair." and pairs[0].score == 2.5


def _beir(tmp_path, corpus, queries, qrels_tsv):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text(queries)
    (tmp_path / "qrels" / "test.tsv").write_text(qrels_tsv)
    return tmp_path


def test_malformed_corpus_line_names_file_and_line(tmp_path):
    good = json.dumps({"_id": "d1", "text": "x"})
    _beir(tmp_path, good + "\n{not json\n", json.dumps({"_id": "q", "text": "y"}), "query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataFormatError, match=r"corpus.jsonl:2: expected one JSON object per line"):
        load_beir(tmp_path)


def test_missing_field_names_it(tmp_path):
    _beir(tmp_path, json.dumps({"_id": "d1"}) + "\n", json.dumps({"_id": "q", "text": "y"}), "query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataFormatError, match=r"corpus.jsonl:1: expected a 'text' field"):
        load_beir(tmp_path)


def test_bad_qrels_row(tmp_path):
    _beir(tmp_path, json.dumps({"_id": "d1", "text": "x"}), json.dumps({"_id": "q", "text": "y"}),
          "query-id\tcorpus-id\tscore\nq\td1\n")
    with pytest.raises(DataFormatError, match=r"test.tsv:2: expected 3 tab-separated fields"):
        load_beir(tmp_path)


def test_qrels_referencing_unknown_documents(tmp_path):
    _beir(tmp_path, json.dumps({"_id": "d1", "text": "x"}), json.dumps({"_id": "q", "text": "y"}),
          "query-id\tcorpus-id\tscore\nq\tnope\t1\n")
    with pytest.raises(DataFormatError, match="missing from corpus.jsonl, e.g. 'nope'"):
        load_beir(tmp_path)


def test_unknown_split_lists_the_existing_ones(data_dir):
    ds = load_beir(data_dir / "limit-small")
    with pytest.raises(InvalidInputError, match=r"split must be one of \['test'\], got 'dev'"):
        ds.split("dev")


def test_not_a_beir_folder(tmp_path):
    with pytest.raises(DataFormatError, match="must be a BEIR folder with corpus.jsonl"):
        load_beir(tmp_path)


def test_sts_malformed_score(tmp_path):
    f = tmp_path / "sts-test.csv"
    f.write_text("g\tf\t2012\t1\tfive\ta\tb\n")
    with pytest.raises(DataFormatError, match=r"sts-test.csv:1: field 5 \(score\) must be a number, got 'five'"):
        load_sts(f)
