"""mine_hard_negatives: a hand-made corpus, the real default encoder."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import CancelledError, InvalidInputError
from embedlab.index import Collection
from embedlab.train import PairDataset, mine_hard_negatives

CAT, CAT_TWIN = "Cats eat mice and fish.", "Cats eat fish and mice."  # the twin: a near-duplicate of the positive
PAIRS = [("what do cats eat", CAT), ("how fast is a cheetah", "A cheetah runs at 110 km/h."),
         ("capital of france", "Paris is the capital of France.")]
EXTRA = [CAT_TWIN, "Dogs eat meat.", "Lions are fast runners.", "Berlin is the capital of Germany.",
         "The stock market fell today.", "Rain is expected tomorrow."]


def dataset(pairs=PAIRS) -> PairDataset:
    return PairDataset({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})


def corpus(pairs=PAIRS) -> list[str]:
    return [p for _, p in pairs] + EXTRA


def rows(ds: PairDataset) -> list[dict]:
    batch = ds.batch(range(len(ds)))
    return [{c: batch[c][i] for c in batch} for i in range(len(ds))]


def test_no_labelled_positive_or_anchor_is_ever_a_negative(encoder):
    pairs = PAIRS + [("what do cats eat", "Cats like fish.")]  # a second positive of one anchor
    mined = mine_hard_negatives(encoder, dataset(pairs), corpus(pairs) + ["capital of france"], num_negatives=5)
    assert len(mined) == 4 and mined.num_negatives == 5
    for row in rows(mined):
        labelled = {p for a, p in pairs if a == row["anchor"]} | {row["anchor"]}
        assert not labelled & set(row["negative"]), row
        assert len(set(row["negative"])) == 5


def test_margin_drops_a_near_duplicate_of_the_positive(encoder):
    q, pos, twin = encoder.encode(["what do cats eat", CAT, CAT_TWIN])
    assert q @ twin > q @ pos - 0.05  # the construction: the twin scores within 0.05 of the positive
    plain = mine_hard_negatives(encoder, dataset(), corpus())
    assert rows(plain)[0]["negative"] == [CAT_TWIN]  # the hardest candidate, unfiltered
    for kind, margin in (("absolute", 0.05), ("relative", 0.1)):
        mined = mine_hard_negatives(encoder, dataset(), corpus(), num_negatives=2, margin=margin, margin_kind=kind)
        cat = rows(mined)[0]
        assert cat["anchor"] == "what do cats eat" and CAT_TWIN not in cat["negative"]
        assert mined.mining.margin_dropped >= 1
        negs = encoder.encode(cat["negative"])
        limit = q @ pos - margin if kind == "absolute" else (q @ pos) * (1 - margin)
        assert np.all(negs @ q <= limit + 1e-6)


def test_range_min_skips_the_top_ranks(encoder):
    top = rows(mine_hard_negatives(encoder, dataset(), corpus(), num_negatives=4))
    skipped = rows(mine_hard_negatives(encoder, dataset(), corpus(), range_min=1, num_negatives=3))
    assert [r["negative"] for r in skipped] == [r["negative"][1:4] for r in top]
    capped = rows(mine_hard_negatives(encoder, dataset(), corpus(), range_min=1, range_max=3, num_negatives=2))
    assert [r["negative"] for r in capped] == [r["negative"][1:3] for r in top]


@pytest.mark.parametrize("n", [1, 3])
def test_num_negatives_is_honoured(encoder, n):
    mined = mine_hard_negatives(encoder, dataset(), corpus(), num_negatives=n)
    assert mined.num_negatives == n and all(len(r["negative"]) == n for r in rows(mined))
    assert (mined.mining.rows, mined.mining.kept, mined.mining.dropped) == (3, 3, 0)


def test_output_file_round_trips_through_from_jsonl(encoder, tmp_path):
    out = tmp_path / "mined.jsonl"
    ds = PairDataset(dataset().batch(range(3)), prompts={"anchor": "query: "})
    mined = mine_hard_negatives(encoder, ds, corpus(), num_negatives=2, out=out)
    back = PairDataset.from_jsonl(out, prompts=mined.prompts)
    assert rows(back) == rows(mined) and back.columns == ["anchor", "positive", "negative"]
    assert mined.mining.out == str(out) and mined.prompts == {"anchor": "query: "}


def test_a_passed_collection_gives_the_same_negatives(encoder, tmp_path):
    texts = corpus()
    with Collection.create(tmp_path / "c", dim=encoder.dim, metric="cosine", index="flat") as coll:
        coll.add([f"d{i}" for i in range(len(texts))], encoder.encode(texts), texts=texts)
        via = mine_hard_negatives(encoder, dataset(), collection=coll, num_negatives=3, margin=0.05)
    own = mine_hard_negatives(encoder, dataset(), texts, num_negatives=3, margin=0.05)
    assert rows(via) == rows(own) and via.mining.corpus == len(texts)


def test_rows_short_of_negatives_are_dropped_and_counted(encoder, tmp_path):
    pairs = PAIRS + [("what do cats eat", "Cats like fish.")]  # default corpus: the 4 positives
    mined = mine_hard_negatives(encoder, dataset(pairs), num_negatives=3)  # the cat anchor has only 2 candidates
    assert [r["anchor"] for r in rows(mined)] == ["how fast is a cheetah", "capital of france"]
    assert (mined.mining.rows, mined.mining.kept, mined.mining.dropped, mined.mining.corpus) == (4, 2, 2, 4)


def test_no_row_with_negatives_is_an_error_and_writes_nothing(encoder, tmp_path):
    out = tmp_path / "mined.jsonl"
    with pytest.raises(InvalidInputError, match=r"mine_hard_negatives: every row must find num_negatives=3 "
                                                r"negatives to be kept, got none of 3 rows"):
        mine_hard_negatives(encoder, dataset(), num_negatives=3, out=out)  # 3 positives: 2 candidates each
    assert not out.exists()


def test_progress_counts_corpus_and_anchors_and_can_cancel(encoder):
    seen = []
    mine_hard_negatives(encoder, dataset(), corpus(), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(corpus()) + 3, len(corpus()) + 3)
    with pytest.raises(CancelledError):
        mine_hard_negatives(encoder, dataset(), corpus(), progress=lambda d, t: d < len(corpus()))


@pytest.mark.parametrize("kwargs, message", [
    ({"range_min": -1}, r"mine_hard_negatives: range_min must be an int >= 0, got -1"),
    ({"range_min": 5, "range_max": 5}, r"range_max must be an int in \[6, 10000\], got 5\. range_max must be above"),
    ({"range_max": 0}, r"range_max must be an int in \[1, 10000\], got 0"),
    ({"num_negatives": 0}, r"num_negatives must be a positive int, got 0"),
    ({"margin": -0.1}, r"margin must be a finite number >= 0 or None, got -0.1"),
    ({"margin": float("nan")}, r"margin must be a finite number >= 0 or None, got nan"),
    ({"margin": 1.5, "margin_kind": "relative"}, r"margin must be a number in \[0, 1\] for margin_kind='relative'"),
    ({"margin_kind": "ratio"}, r"margin_kind must be one of \['absolute', 'relative'\], got 'ratio'"),
    ({"batch_size": 0}, r"batch_size must be a positive int, got 0"),
    ({"corpus": []}, r"corpus must be a non-empty list of str, got 0 items"),
    ({"collection": object()}, r"corpus must be None when collection is given"),
])
def test_bad_parameters_are_clear_errors(encoder, kwargs, message):
    kwargs = {"corpus": corpus(), **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        mine_hard_negatives(encoder, dataset(), **kwargs)


def test_a_dataset_that_is_not_contrastive_is_refused(encoder):
    scored = PairDataset({"sentence1": ["a"], "sentence2": ["b"], "score": [0.5]})
    with pytest.raises(InvalidInputError, match=r"mine_hard_negatives: dataset must be a contrastive PairDataset "
                                                r"\(anchor, positive\), got a scored PairDataset"):
        mine_hard_negatives(encoder, scored)
    with pytest.raises(InvalidInputError, match=r"dataset must be a contrastive PairDataset .*, got list"):
        mine_hard_negatives(encoder, [("a", "b")])
