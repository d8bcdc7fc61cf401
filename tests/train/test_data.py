"""Training data: JSON-lines / BEIR / STS loaders, the no-duplicates batches, sampling across data sets, resuming."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.train import Batch, Batches, PairDataset


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _pairs(n, *, distinct=None, prefix=""):
    """``n`` (anchor, positive) rows; with ``distinct`` only that many different positive texts."""
    return PairDataset({"anchor": [f"{prefix}q{i}" for i in range(n)],
                        "positive": [f"{prefix}p{i % (distinct or n)}" for i in range(n)]})


def _take(batches, n):
    return [next(batches) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- loaders
def test_jsonl_contrastive_with_negatives_as_str_list_or_numbered(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"anchor": "q1", "positive": "p1", "negative": "n1"}, "",
                                               {"anchor": "q2", "positive": "p2", "negative": ["n2"]}])
    ds = PairDataset.from_jsonl(path)
    assert (ds.kind, ds.columns, len(ds), ds.num_negatives) == ("contrastive", ["anchor", "positive", "negative"], 2, 1)
    assert ds.batch([1, 0]) == {"anchor": ["q2", "q1"], "positive": ["p2", "p1"], "negative": [["n2"], ["n1"]]}
    numbered = _write_jsonl(tmp_path / "b.jsonl", [{"anchor": "q", "positive": "p", "negative_2": "y", "negative_1": "x"}])
    assert PairDataset.from_jsonl(numbered).batch([0])["negative"] == [["x", "y"]]
    plain = PairDataset.from_jsonl(_write_jsonl(tmp_path / "c.jsonl", [{"anchor": "q", "positive": "p"}]))
    assert plain.columns == ["anchor", "positive"] and plain.num_negatives == 0


def test_jsonl_scored(tmp_path):
    ds = PairDataset.from_jsonl(_write_jsonl(tmp_path / "s.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1},
                                                                   {"sentence1": "c", "sentence2": "d", "score": 0.25}]))
    assert (ds.kind, ds.columns) == ("scored", ["sentence1", "sentence2", "score"])
    assert ds.batch([0, 1])["score"] == [1.0, 0.25]


@pytest.mark.parametrize("line, message", [
    ('{"anchor": "q", "positive": ', r"b\.jsonl:2: expected one JSON object per line, got invalid JSON"),
    ('["q", "p"]', r"b\.jsonl:2: expected a JSON object, got list"),
    ('{"anchor": "q"}', r"b\.jsonl:2: a row must have fields \['anchor', 'positive'\].*missing \['positive'\]"),
    ('{"sentence1": "a", "sentence2": "b"}', r"b\.jsonl:2: a scored row must have fields .*missing \['score'\]"),
    ('{"anchor": "q", "positive": "p", "negative": ["x", "y"]}', r"b\.jsonl:2: every row must have the same number of negatives, got 2 after 1"),
    ('{"anchor": "q", "positive": "p", "negatives": ["x"]}', r"b\.jsonl:2: fields must be among .*unknown \['negatives'\]"),
    ('{"anchor": "q", "positive": 3, "negative": "x"}', r"b\.jsonl:2: field 'positive' must be a str, got int"),
])
def test_jsonl_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "b.jsonl"
    path.write_text('{"anchor": "q0", "positive": "p0", "negative": "n0"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=message):
        PairDataset.from_jsonl(path)


def test_jsonl_mixed_kinds_and_bad_score(tmp_path):
    mixed = _write_jsonl(tmp_path / "m.jsonl", [{"anchor": "q", "positive": "p"},
                                                {"sentence1": "a", "sentence2": "b", "score": 1}])
    with pytest.raises(DataFormatError, match=r"m\.jsonl:2: every row must be contrastive like the first, got a scored row"):
        PairDataset.from_jsonl(mixed)
    nan = tmp_path / "n.jsonl"
    nan.write_text('{"sentence1": "a", "sentence2": "b", "score": NaN}\n')
    with pytest.raises(DataFormatError, match=r"n\.jsonl:1: field 'score' must be a finite number, got nan"):
        PairDataset.from_jsonl(nan)


def test_empty_or_label_less_data_is_a_clear_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InvalidInputError, match=r"from_jsonl: path must hold at least one row, got .*e\.jsonl"):
        PairDataset.from_jsonl(tmp_path / "e.jsonl")
    with pytest.raises(DataFormatError, match=r"from_jsonl: path must be a JSON-lines file, got .*(no such file)"):
        PairDataset.from_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInputError, match=r"PairDataset: columns must be anchor, positive.*got \['anchor'\].*no labels"):
        PairDataset({"anchor": ["q"]})
    with pytest.raises(InvalidInputError, match=r"PairDataset: columns must hold at least one row, got 0"):
        PairDataset({"anchor": [], "positive": []})
    with pytest.raises(InvalidInputError, match=r"column 'negative' must have one count per row, got counts \[1, 2\]"):
        PairDataset({"anchor": ["a", "b"], "positive": ["p", "q"], "negative": [["x"], ["y", "z"]]})


def _beir(folder, *, relevance=1):
    folder.mkdir()
    _write_jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(4)])
    _write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_text(
        f"query-id\tcorpus-id\tscore\nq0\td0\t{relevance}\nq0\td1\t{relevance}\nq2\td3\t{relevance}\nq1\td2\t0\n")
    return folder


def test_beir_split_gives_query_positive_pairs(tmp_path):
    ds = PairDataset.from_beir(_beir(tmp_path / "b"), "train", prompts={"anchor": "query: "})
    assert ds.kind == "contrastive" and ds.prompts == {"anchor": "query: "}
    assert ds.batch(range(len(ds))) == {"anchor": ["query 0", "query 0", "query 2"],
                                        "positive": ["doc 0", "doc 1", "doc 3"]}
    with pytest.raises(InvalidInputError, match=r"from_beir: split must be one of \['train'\], got 'dev'"):
        PairDataset.from_beir(tmp_path / "b", "dev")
    with pytest.raises(InvalidInputError, match=r"from_beir: split must judge at least one document relevant"):
        PairDataset.from_beir(_beir(tmp_path / "z", relevance=0), "train")


def test_beir_wordnet_train_pairs(data_dir):
    ds = PairDataset.from_beir(data_dir / "wordnet-beir", "train")
    assert len(ds) == 33_828 and ds.columns == ["anchor", "positive"]


def test_sts_scores_are_divided_by_five(data_dir):
    ds = PairDataset.from_sts(data_dir / "stsbenchmark", "dev")
    rows = ds.batch(range(len(ds)))
    assert len(ds) == 1500 and ds.kind == "scored"
    assert rows["score"][0] == 1.0 and min(rows["score"]) >= 0.0 and max(rows["score"]) <= 1.0
    assert rows["sentence1"][0] == "A man with a hard hat is dancing."
    with pytest.raises(InvalidInputError, match=r"from_sts: split must be one of \['dev', 'test', 'train'\], got 'validation'"):
        PairDataset.from_sts(data_dir / "stsbenchmark", "validation")


# ---------------------------------------------------------------------------------------------- batches
def test_batches_never_hold_a_duplicate_positive():
    ds = _pairs(60, distinct=12)  # each positive text five times
    batches = Batches(ds, 8, seed=3)
    for _, batch in _take(batches, 4 * len(batches)):
        assert len(batch["positive"]) == 8 and len(set(batch["positive"])) == 8


def test_no_text_shared_across_columns_of_a_batch():
    ds = PairDataset({"anchor": ["a", "b", "c", "d"], "positive": ["x", "y", "a", "z"],
                      "negative": [["y"], ["n1"], ["n2"], ["n3"]]})
    for _, batch in _take(Batches(ds, 2, seed=0), 20):
        texts = batch["anchor"] + batch["positive"] + [t for row in batch["negative"] for t in row]
        assert len(set(texts)) == len(texts)


def test_an_epoch_covers_every_row_once_and_epochs_reshuffle():
    ds = _pairs(24)
    batches = Batches(ds, 6, seed=0)
    assert len(batches) == 4
    epochs = [[t for _, b in _take(batches, 4) for t in b["anchor"]] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(ds.batch(range(24))["anchor"])
    assert epochs[0] != epochs[1]
    assert batches.epoch() == 2


def test_batches_are_deterministic_for_a_seed():
    def run(seed):
        return [b["anchor"] for _, b in _take(Batches(_pairs(30, distinct=10), 5, seed=seed), 12)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_drop_last_false_keeps_the_incomplete_batches():
    ds = _pairs(10)
    kept = [b["anchor"] for _, b in _take(Batches(ds, 4, drop_last=False), 3)]
    assert [len(b) for b in kept] == [4, 4, 2] and len({t for b in kept for t in b}) == 10
    assert len(Batches(ds, 4)) == 2


def test_scored_batches_are_plain_shuffles():
    ds = PairDataset({"sentence1": ["a"] * 6, "sentence2": ["b"] * 6, "score": [0, 1, 2, 3, 4, 5]})
    (name, batch), = _take(Batches(ds, 6), 1)
    assert name == "default" and sorted(batch["score"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_bad_batch_settings_are_clear_errors():
    with pytest.raises(InvalidInputError, match=r"Batches: batch_size must be at most the rows of every data set, got 11 for 'default' with 10 rows"):
        Batches(_pairs(10), 11)
    with pytest.raises(InvalidInputError, match=r"batch_size must allow one batch of rows without a shared text, got 3 for 'default'"):
        Batches(_pairs(10, distinct=2), 3)
    with pytest.raises(InvalidInputError, match=r"Batches: sampling must be one of \['proportional', 'round_robin'\], got 'random'"):
        Batches(_pairs(10), 2, sampling="random")
    with pytest.raises(InvalidInputError, match=r"Batches: batch_size must be a positive int, got 0"):
        Batches(_pairs(10), 0)


# ---------------------------------------------------------------------------------------------- several data sets
def test_proportional_sampling_draws_each_data_set_by_size_and_never_mixes():
    data = {"big": _pairs(40, prefix="b"), "small": _pairs(10, prefix="s")}
    batches = Batches(data, 5, seed=2)
    assert len(batches) == 10
    drawn = _take(batches, 20)
    for name, batch in drawn:
        assert all(t.startswith(name[0]) for t in batch["anchor"])
    for round_ in (drawn[:10], drawn[10:]):
        assert Counter(name for name, _ in round_) == {"big": 8, "small": 2}
    assert [n for n, _ in drawn[:10]] != ["big"] * 8 + ["small"] * 2  # interleaved, not in blocks


def test_round_robin_alternates_the_data_sets():
    scored = PairDataset({"sentence1": list("abcdef"), "sentence2": list("ghijkl"), "score": [0.1] * 6})
    batches = Batches({"pairs": _pairs(8), "sts": scored}, 2, sampling="round_robin")
    assert len(batches) == 2 * 3
    names = [n for n, _ in _take(batches, 10)]
    assert names == ["pairs", "sts"] * 5


def test_round_robin_weights_give_a_data_set_consecutive_turns():
    batches = Batches({"pairs": _pairs(8, prefix="a"), "queries": _pairs(30, prefix="b")}, 2, sampling="round_robin",
                      weights={"pairs": 1, "queries": 3})
    assert len(batches) == 4 * 4  # a cycle of 4 turns; the pairs' 4 batches fill 4 cycles, the queries' 15 fill 5
    drawn = _take(batches, 12)
    assert [n for n, _ in drawn] == ["pairs", "queries", "queries", "queries"] * 3
    queries = [text for n, b in drawn if n == "queries" for text in b["anchor"]]
    assert len(set(queries)) == len(queries) == 18  # still one epoch of distinct rows, not repeats


@pytest.mark.parametrize("weights, message", [
    ({"pairs": 1}, r"weights must name every data set \['pairs', 'queries'\] once, got \['pairs'\]"),
    ({"pairs": 1, "queries": 1, "other": 2}, r"once, got \['other', 'pairs', 'queries'\]"),
    ([1, 3], r"once, got list"),
    ({"pairs": 0, "queries": 1}, r"weights\['pairs'\]"),
    ({"pairs": True, "queries": 1}, r"weights\['pairs'\]"),
    ({"pairs": 1.5, "queries": 1}, r"weights\['pairs'\]"),
])
def test_bad_round_robin_weights_are_clear_errors(weights, message):
    with pytest.raises(InvalidInputError, match=message):
        Batches({"pairs": _pairs(4), "queries": _pairs(4, prefix="b")}, 2, sampling="round_robin", weights=weights)


def test_weights_with_proportional_sampling_are_refused():
    with pytest.raises(InvalidInputError, match=r"weights apply to sampling='round_robin', got sampling='proportional'"):
        Batches({"pairs": _pairs(4)}, 2, weights={"pairs": 2})


def test_weighted_round_robin_state_resumes_and_weights_are_part_of_the_config():
    def make(weights):
        return Batches({"a": _pairs(12, prefix="a"), "b": _pairs(20, prefix="b")}, 2, seed=3, sampling="round_robin",
                       weights=weights)

    expected = [(n, dict(b)) for n, b in _take(make({"a": 1, "b": 2}), 20)]
    first = make({"a": 1, "b": 2})
    head = [(n, dict(b)) for n, b in _take(first, 7)]
    state = json.loads(json.dumps(first.state_dict()))
    assert head + [(n, dict(b)) for n, b in _take(make({"a": 1, "b": 2}).load_state_dict(state), 13)] == expected
    with pytest.raises(InvalidInputError, match=r"same config"):
        make({"a": 2, "b": 1}).load_state_dict(state)


@pytest.mark.parametrize("sampling", ["proportional", "round_robin"])
def test_state_dict_resumes_with_the_same_batches(sampling):
    def make():
        return Batches({"a": _pairs(23, distinct=9, prefix="a"), "b": _pairs(9, prefix="b")}, 3, seed=5,
                       sampling=sampling)

    straight = make()
    expected = [(n, dict(b)) for n, b in _take(straight, 40)]
    first = make()
    head = [(n, dict(b)) for n, b in _take(first, 17)]
    state = json.loads(json.dumps(first.state_dict()))  # plain JSON
    resumed = make().load_state_dict(state)
    assert head + [(n, dict(b)) for n, b in _take(resumed, 23)] == expected
    assert resumed.state_dict() == straight.state_dict()


def test_state_from_another_config_is_refused():
    state = Batches(_pairs(10), 2, seed=0).state_dict()
    with pytest.raises(InvalidInputError, match=r"load_state_dict: state must come from batches with the same config"):
        Batches(_pairs(10), 2, seed=1).load_state_dict(state)
    with pytest.raises(InvalidInputError, match=r"load_state_dict: state must come from batches with the same config"):
        Batches(_pairs(10, prefix="other"), 2, seed=0).load_state_dict(state)  # other rows, same count
    with pytest.raises(InvalidInputError, match=r"load_state_dict: state must be a Batches.state_dict\(\) of format version 1"):
        Batches(_pairs(10), 2).load_state_dict({"step": 3})


# ---------------------------------------------------------------------------------------------- prompts
def test_prompts_travel_with_the_batches():
    ds = PairDataset({"anchor": ["q0", "q1"], "positive": ["p0", "p1"]}, prompts={"anchor": "query: "})
    (_, batch), = _take(Batches(ds, 2, prompts={"positive": "passage: "}), 1)
    assert isinstance(batch, Batch) and batch.prompts == {"anchor": "query: ", "positive": "passage: "}
    with pytest.raises(InvalidInputError, match=r"Batches: prompts must agree with the data sets' own"):
        Batches(ds, 2, prompts={"anchor": "search: "})
    with pytest.raises(InvalidInputError, match=r"PairDataset: prompts keys must be among the text columns \['anchor', 'positive', 'negative'\], got 'query'"):
        PairDataset({"anchor": ["q"], "positive": ["p"]}, prompts={"query": "query: "})


def test_batches_prompts_apply_to_the_data_sets_with_that_column():
    scored = PairDataset({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [0.0, 1.0]})
    batches = Batches({"pairs": _pairs(2), "sts": scored}, 2, sampling="round_robin", prompts={"anchor": "query: "})
    (_, pairs), (_, sts) = _take(batches, 2)
    assert pairs.prompts == {"anchor": "query: "} and sts.prompts == {}
    with pytest.raises(InvalidInputError, match=r"Batches: prompts keys must be text columns of the data sets .*got \['query'\]"):
        Batches(_pairs(2), 2, prompts={"query": "query: "})
