"""Dataset loading on the real SST-2 copy, other formats, and bad data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataselect.core.config import DatasetConfig
from dataselect.core.data import find_duplicates, frame_fingerprint, load_dataset
from dataselect.core.errors import DataError


@pytest.fixture(scope="module")
def sst2(sst2_dir):
    return load_dataset(DatasetConfig(source=str(sst2_dir)))


def test_sst2_sizes_and_label_counts_match_its_readme(sst2):
    assert len(sst2.train) == 67_349 and len(sst2.eval) == 872
    assert np.bincount(sst2.train["label"]).tolist() == [29_780, 37_569]
    assert np.bincount(sst2.eval["label"]).tolist() == [428, 444]
    assert list(sst2.train.columns) == ["id", "text", "label"]
    assert sst2.train["id"].tolist() == list(range(67_349))
    assert sst2.num_labels == 2


def test_sst2_quotes_survive_quote_none(sst2, sst2_dir):
    # Rows with bare quote characters (SST-2 has apostrophes) must be read verbatim (csv.QUOTE_NONE).
    quoted = sst2.train[sst2.train["text"].str.contains("'")]
    assert len(quoted) > 0
    lines = (sst2_dir / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for i in quoted["id"].head(20):
        assert lines[i].rsplit("\t", 1)[0] == sst2.train.loc[i, "text"]


def test_sst2_duplicates_reported_not_dropped(sst2):
    assert sst2.duplicates.n_repeated_rows == 371
    assert sst2.duplicates.n_conflicting_texts == 5
    assert len(sst2.train) == 67_349


def test_pool_subsample_is_seeded_and_keeps_source_ids(sst2_dir, sst2):
    cfg = DatasetConfig(source=str(sst2_dir), pool_size=500, pool_seed=3, eval_size=100)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert len(a.train) == 500 and len(a.eval) == 100
    assert a.fingerprint == b.fingerprint
    assert a.train["id"].is_monotonic_increasing
    full = sst2.train.set_index("id")
    assert (full.loc[a.train["id"], "text"].to_numpy() == a.train["text"].to_numpy()).all()
    c = load_dataset(cfg.model_copy(update={"pool_seed": 4}))
    assert c.fingerprint != a.fingerprint


def test_label_names_map_digits(sst2_dir):
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), label_names=["negative", "positive"], eval_size=50))
    assert ds.label_names == ["negative", "positive"]
    assert set(ds.eval["label"]) == {0, 1}


@pytest.fixture()
def multiclass_dir(tmp_path, sst2):
    """A 3-class local file built from real SST-2 rows (label by length tercile × sentiment)."""
    rows = sst2.train.head(600).copy()
    rows["topic"] = np.array(["short", "medium", "long"])[pd.qcut(rows["text"].str.len(), 3, labels=False)]
    return tmp_path, rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "tsv"])
def test_multiclass_local_formats(multiclass_dir, fmt):
    d, rows = multiclass_dir
    frame = rows.rename(columns={"text": "review"})[["review", "topic"]]
    for split, part in (("train", frame.iloc[:500]), ("validation", frame.iloc[500:])):
        p = d / f"{split}.{fmt}"
        if fmt == "csv":
            part.to_csv(p, index=False)
        elif fmt == "tsv":
            part.to_csv(p, sep="\t", index=False, quoting=3, escapechar=None)
        elif fmt == "jsonl":
            part.to_json(p, orient="records", lines=True)
        else:
            part.to_parquet(p)
    ds = load_dataset(DatasetConfig(source=str(d), text_column="review", label_column="topic"))
    assert ds.label_names == ["long", "medium", "short"]
    assert ds.num_labels == 3
    assert len(ds.train) == 500 and len(ds.eval) == 100
    expect = rows["topic"].iloc[:500].map({"long": 0, "medium": 1, "short": 2}).to_numpy()
    assert (ds.train["label"].to_numpy() == expect).all()
    assert (ds.train["text"].to_numpy() == rows["text"].iloc[:500].to_numpy()).all()


def _write(tmp_path, train: pd.DataFrame, val: pd.DataFrame | None = None, fmt="csv"):
    val = train if val is None else val
    for split, part in (("train", train), ("validation", val)):
        if fmt == "csv":
            part.to_csv(tmp_path / f"{split}.csv", index=False)
        else:
            with open(tmp_path / f"{split}.jsonl", "w") as f:
                for r in part.to_dict("records"):
                    f.write(json.dumps(r) + "\n")
    return DatasetConfig(source=str(tmp_path), text_column="text", label_column="label")


def test_empty_text_names_row(tmp_path):
    df = pd.DataFrame({"text": ["good film", "  ", "bad film"], "label": [1, 0, 0]})
    with pytest.raises(DataError, match=r"dataset.train: empty text in column 'text' at row 1"):
        load_dataset(_write(tmp_path, df))


def test_missing_label_names_row(tmp_path):
    df = pd.DataFrame({"text": ["good film", "fine", "bad film"], "label": [1, None, 0]})
    with pytest.raises(DataError, match=r"dataset.train: missing label in column 'label' at row 1"):
        load_dataset(_write(tmp_path, df, fmt="jsonl"))


def test_missing_column_lists_columns(tmp_path):
    df = pd.DataFrame({"sentence": ["a", "b"], "label": [1, 0]})
    with pytest.raises(DataError, match=r"dataset.text_column: column 'text' not in train.csv; columns: \['sentence', 'label'\]"):
        load_dataset(_write(tmp_path, df))


def test_class_with_no_rows(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 2, 2]})
    with pytest.raises(DataError, match=r"dataset.train: class '1' has no rows"):
        load_dataset(_write(tmp_path, df))


def test_declared_class_with_no_rows(tmp_path):
    df = pd.DataFrame({"text": ["a", "b"], "label": ["pos", "neg"]})
    cfg = _write(tmp_path, df).model_copy(update={"label_names": ["neg", "neutral", "pos"]})
    with pytest.raises(DataError, match=r"class 'neutral' has no rows"):
        load_dataset(cfg)


def test_eval_label_unknown_to_train(tmp_path):
    tr = pd.DataFrame({"text": ["a", "b"], "label": ["pos", "neg"]})
    va = pd.DataFrame({"text": ["c"], "label": ["meh"]})
    with pytest.raises(DataError, match=r"dataset.eval: label 'meh' in column 'label' is not a known class"):
        load_dataset(_write(tmp_path, tr, va))


def test_missing_split_file(tmp_path):
    pd.DataFrame({"text": ["a"], "label": [0]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match=r"dataset.eval_split: no validation\.\{tsv,csv,jsonl,parquet\}"):
        load_dataset(DatasetConfig(source=str(tmp_path), text_column="text"))


def test_single_class_pool(tmp_path, sst2_dir):
    with pytest.raises(DataError, match=r"dataset.train: need at least 2 classes"):
        df = pd.DataFrame({"text": ["a", "b"], "label": [0, 0]})
        load_dataset(_write(tmp_path, df))


def test_fingerprint_changes_with_content(sst2):
    a = sst2.train.head(100)
    b = a.copy()
    b.loc[5, "text"] = b.loc[5, "text"] + " !"
    assert frame_fingerprint(a) != frame_fingerprint(b)
    assert frame_fingerprint(a) == frame_fingerprint(a.copy())


def test_find_duplicates_counts_conflicts():
    df = pd.DataFrame({"text": ["a", "a", "b", "b", "c"], "label": [0, 0, 0, 1, 1]})
    rep = find_duplicates(df)
    assert (rep.n_repeated_rows, rep.n_conflicting_texts) == (2, 1)


def test_hub_source_offline_fails_fast_with_a_hint(monkeypatch):
    # The hub path is real code (datasets.load_dataset("glue", "sst2")); offline
    # it must fail at once with a pointer to local files, not retry for minutes.
    import time

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.monotonic()
    with pytest.raises(DataError, match=r"dataset.source: cannot load hub dataset 'glue/sst2'.*local folder"):
        load_dataset(DatasetConfig(source="glue/sst2", text_column="sentence"))
    assert time.monotonic() - t < 60
