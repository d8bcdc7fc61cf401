"""compatibility_report and ``embedlab eval compat``: old->old, new(+map)->old, re-indexed and the backfill curve."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from embedlab.errors import ConflictError, InvalidInputError
from embedlab.eval import load_beir
from embedlab.eval.compat import compatibility_report
from embedlab.eval.retrieval import exact_metrics
from embedlab.index import Collection
from embedlab.models import Encoder
from embedlab.models.alignment import Alignment
from embedlab.train.compat import align

_spec = importlib.util.spec_from_file_location("_models_conftest", Path(__file__).parents[1] / "models" / "conftest.py")
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
_tiny_bert = _models._tiny_bert


N_DOCS = 800  # enough texts to fit a 384-d map (2 per dimension)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, encoder, data_dir):
    """A WordNet slice (its first 800 documents and the test queries judging only them) as a BEIR folder, the default
    model as the old one with a flat collection of the slice, and a 3-layer truncation of it as the new one."""
    from embedlab.train.distill import truncated_student

    root = tmp_path_factory.mktemp("compat")
    wordnet = data_dir / "wordnet-beir"
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = (wordnet / "corpus.jsonl").read_text().splitlines()[:N_DOCS]
    (beir / "corpus.jsonl").write_text("\n".join(docs) + "\n")
    keep = {json.loads(d)["_id"] for d in docs}
    judged = [line.split("\t") for line in (wordnet / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    judged = [row for row in judged if row[1] in keep]
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in judged))
    wanted = {r[0] for r in judged}
    queries = [q for q in (wordnet / "queries.jsonl").read_text().splitlines() if json.loads(q)["_id"] in wanted]
    (beir / "queries.jsonl").write_text("\n".join(queries) + "\n")
    dataset = load_beir(beir)
    new = truncated_student(encoder, 3)
    new.save(root / "new")
    new = Encoder.load(root / "new")
    collection = Collection.create(root / "index", dim=encoder.dim, index="flat", encoder=encoder)
    collection.add(dataset.corpus_ids, texts=dataset.corpus_texts)
    collection.close()
    return root, dataset, encoder, new


def test_the_report_compares_the_three_setups(setup):
    root, dataset, old, new = setup
    align(new, old, dataset.corpus_texts)
    with Collection.open(root / "index", readonly=True) as c:
        report = compatibility_report(c, new, dataset, shares=(0, 0.5, 1), target=0.9)
    query_ids, _, qrels = dataset.split("test")

    def ndcg(q, docs) -> float:  # exact search and trec_eval's nDCG@10, outside the report
        return exact_metrics(q, docs, query_ids, dataset.corpus_ids, qrels)["ndcg@10"]

    old_q, new_q = old.encode(dataset.split("test")[1]), new.encode(dataset.split("test")[1])
    old_docs, new_docs = old.encode(dataset.corpus_texts), new.encode(dataset.corpus_texts)
    assert report.old_on_old == pytest.approx(ndcg(old_q, old_docs), abs=1e-6)
    assert report.new_on_old == pytest.approx(ndcg(new.alignment.apply(new_q), old_docs), abs=1e-6)
    assert report.reindexed == pytest.approx(ndcg(new_q, new_docs), abs=1e-6)
    assert [s for s, _ in report.backfill] == [0, 0.5, 1]
    assert report.backfill[0][1] == pytest.approx(report.new_on_old, abs=1e-6)  # nothing re-encoded: the old index
    mapped_all = ndcg(new.alignment.apply(new_q), new.alignment.apply(new_docs))
    assert report.backfill[-1][1] == pytest.approx(mapped_all, abs=1e-6)
    expect = next((s for s, v in report.backfill if v >= 0.9 * report.reindexed), None)
    assert report.share_needed == expect
    assert len({report.old_on_old, report.new_on_old, report.reindexed}) == 3  # three different setups
    assert "re-indexed" in report.render() and report.as_dict()["alignment"] in ("ridge", "procrustes")


def test_a_model_in_the_same_space_needs_no_reencoding(setup):
    root, dataset, old, _ = setup
    twin = Encoder.load(old.source)
    twin.alignment = Alignment(old.space, old.source, "distilled")
    with Collection.open(root / "index", readonly=True) as c:
        report = compatibility_report(c, twin, dataset)
    assert report.old_on_old == pytest.approx(report.new_on_old) == pytest.approx(report.reindexed)
    assert report.share_needed == 0.0


def test_bad_reports(setup, tmp_path):
    root, dataset, old, _ = setup
    stranger = Encoder.load(_tiny_bert(tmp_path / "stranger", seed=5))
    with Collection.open(root / "index", readonly=True) as c:
        with pytest.raises(ConflictError, match="neither that model nor aligned to it"):
            compatibility_report(c, stranger, dataset)
        with pytest.raises(InvalidInputError, match="target must be in"):
            compatibility_report(c, old, dataset, target=0)
    partial = Collection.create(tmp_path / "partial", dim=old.dim, index="flat", encoder=old)
    partial.add(dataset.corpus_ids[:10], texts=dataset.corpus_texts[:10])
    with pytest.raises(InvalidInputError, match=f"exactly the {N_DOCS} documents"):
        compatibility_report(partial, old, dataset)
    partial.close()


def test_cli_eval_compat_fits_a_map_and_prints_the_report(setup, cli, tmp_path):
    root, _, _, new = setup
    result = cli("eval", "compat", "--collection", str(root / "index"), "--data", str(root / "beir"),
                 "--model", str(new.source), "--fit-map", "--pairs-split", "test", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"old_on_old", "new_on_old", "reindexed", "backfill", "share_needed"} <= set(report)
    refused = cli("eval", "compat", "--collection", str(root / "index"), "--data", str(root / "beir"),
                  "--model", str(_tiny_bert(tmp_path / "stranger")))
    assert refused.exit_code != 0 and "aligned" in refused.output


def test_cli_train_distill_writes_an_aligned_student(setup, cli, tmp_path):
    root, _, old, _ = setup
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(t.replace("\n", " ") for t in setup[1].corpus_texts[:64]))
    result = cli("train", "distill", "--data", str(texts), "--teacher", str(old.source), "--layers", "1",
                 "--steps", "3", "--batch-size", "16", "--out", str(tmp_path / "student"), "--cache",
                 str(tmp_path / "cache"), "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["student_layers"] == 1 and summary["steps"] == 3
    student = Encoder.load(tmp_path / "student")
    assert student.alignment.space == old.space and student.num_layers == 1
    with Collection.open(root / "index", readonly=True, encoder=student) as c:  # accepted for queries
        assert c.search(["a small dog", "to run fast"], k=3).ids.shape == (2, 3)
    bad = cli("train", "distill", "--data", str(texts), "--teacher", str(old.source), "--layers", "1", "--student",
              str(old.source), "--steps", "1", "--out", str(tmp_path / "x"))
    assert bad.exit_code != 0 and "got both" in bad.output
