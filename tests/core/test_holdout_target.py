"""The holdout rule (no phrase of a held-out sentence stays in the pool) and the target's sources."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from dataselect.core.config import DatasetConfig, HoldoutConfig, TargetConfig
from dataselect.core.data import held_out_eval_id, load_dataset
from dataselect.core.errors import ConfigError, DataError
from dataselect.core.holdout import normalise, phrase_rows, split_holdout, whole_rows
from dataselect.sweep.study import parse_study

PHRASES = ["it is a gorgeous film .", "a gorgeous film", "gorgeous", "film", "it is",
           "a dull mess", "dull", "a dull mess", "the cast is fine", "cast"]


def test_whole_rows_are_no_phrase_of_a_longer_row():
    assert whole_rows(PHRASES).tolist() == [True, False, False, False, False,
                                            True, False, True, True, False]


def test_phrase_rows_match_on_token_boundaries_only():
    got = phrase_rows(["film", "a gorgeous", "gorgeous film .", "fil", "is a", "it  is"],
                      ["it is a gorgeous film ."])
    assert got.tolist() == [True, True, True, False, True, True]


@pytest.fixture(scope="module")
def sst2_texts(sst2_dir):
    return load_dataset(DatasetConfig(source=str(sst2_dir))).train["text"].tolist()


def test_no_pool_row_is_a_phrase_of_a_held_out_sentence(sst2_texts):
    """The rule, proven on SST-2 by brute force: every token-boundary substring
    check of every remaining pool row against every held-out sentence fails."""
    (held_eval, held_target), removed = split_holdout(sst2_texts, [(400, 0), (150, 1)])
    assert len(held_eval) == 400 and len(held_target) == 150
    assert not set(held_eval) & set(held_target)
    whole = whole_rows(sst2_texts)
    assert whole[held_eval].all() and whole[held_target].all()
    sentences = " \n ".join(normalise(sst2_texts[i]) for i in np.concatenate([held_eval, held_target]))
    haystack = f" {sentences} "
    pool = [normalise(t) for t, r in zip(sst2_texts, removed, strict=True) if not r]
    assert not any(f" {r} " in haystack for r in pool)
    # and everything removed is such a phrase (nothing else left the pool)
    gone = [normalise(t) for t, r in zip(sst2_texts, removed, strict=True) if r]
    assert all(f" {r} " in haystack for r in gone)
    again = split_holdout(sst2_texts, [(400, 0), (150, 1)])
    np.testing.assert_array_equal(again[0][0], held_eval)
    np.testing.assert_array_equal(again[1], removed)


def test_too_many_sentences_is_one_line(sst2_dir):
    with pytest.raises(DataError, match=r"dataset.eval_holdout.sentences: 999999 held-out sentences asked "
                                        r"for, but the pool has only \d+ distinct whole sentences"):
        load_dataset(DatasetConfig(source=str(sst2_dir), eval_holdout=HoldoutConfig(sentences=999_999)))


def test_eval_holdout_grows_the_eval_set_and_shrinks_the_pool(sst2_dir, caplog):
    caplog.set_level(logging.INFO, logger="dataselect.core.data")
    plain = load_dataset(DatasetConfig(source=str(sst2_dir)))
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), eval_holdout=HoldoutConfig(sentences=300, seed=2)),
                      TargetConfig(holdout=HoldoutConfig(sentences=100, seed=5)))
    h = ds.holdout
    assert (h["eval_sentences"], h["target_sentences"]) == (300, 100)
    assert len(ds.train) == h["pool_after"] == h["pool_before"] - h["removed_rows"] == len(plain.train) - h["removed_rows"]
    assert len(ds.eval) == len(plain.eval) + 300
    moved = ds.eval.iloc[len(plain.eval):]
    assert (moved["id"] < 0).all()
    train = plain.train.set_index("id")
    back = -1 - moved["id"].to_numpy()
    assert (train.loc[back, "text"].to_numpy() == moved["text"].to_numpy()).all()
    assert (train.loc[back, "label"].to_numpy() == moved["label"].to_numpy()).all()
    np.testing.assert_array_equal(held_out_eval_id(np.array([0, 5])), [-1, -6])
    assert not set(ds.train["id"]) & set(back) and not set(ds.train["id"]) & set(ds.target.frame["id"])
    assert ds.target.source == "holdout" and not ds.target.transductive and ds.target.n_in_pool == 0
    assert ds.target.frame["text"].str.split().str.len().mean() > 15  # whole sentences
    assert "held out" in caplog.text and f"{h['pool_after']} left" in caplog.text


def test_a_split_target_is_transductive_when_it_is_the_eval_split(sst2_dir):
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=2000), TargetConfig(split="validation"))
    assert ds.target.transductive and ds.target.source == "split:validation"
    assert len(ds.target.frame) == 872 and ds.target.labelled
    cfg = parse_study({"name": "t", "dataset": {"source": str(sst2_dir)}, "selectors": [{"name": "dsir"}],
                        "features": {"ngrams": True}, "grid": {"fractions": [0.1]},
                        "target": {"split": "validation"}})
    assert cfg.transductive


def test_a_path_target_reads_its_column_and_counts_texts_in_the_pool(tmp_path, sst2_dir, caplog):
    pool = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=500)).train
    texts = [*pool["text"].head(3), "an unseen sentence about a film ."]
    pd.DataFrame({"review": texts, "stars": ["1", "0", "1", "0"]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    with caplog.at_level(logging.WARNING, logger="dataselect.core.target"):
        ds = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=500),
                          TargetConfig(path=str(tmp_path / "t.tsv"), text_column="review",
                                       label_column="stars", labelled=2))
    assert ds.target.n_in_pool == 3 and "3 of 4 target texts also occur in the pool" in caplog.text
    assert ds.target.frame["label"].tolist() == [1, 0, 1, 0] and ds.target.source.startswith("path:")


@pytest.mark.parametrize(("body", "target", "match"), [
    ("review\nfine\n", {"text_column": "text"}, r"target.text_column: column 'text' not in t.tsv"),
    ("text\n", {}, r"target.path: t.tsv holds only a header row"),
    ("text\tstars\nfine\tzz\n", {"label_column": "stars"}, r"target.label_column: t.tsv row 0: label 'zz'"),
])
def test_a_bad_target_file_is_one_line(tmp_path, sst2_dir, body, target, match):
    (tmp_path / "t.tsv").write_text(body)
    with pytest.raises(DataError, match=match):
        load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=200, text_column="sentence"),
                     TargetConfig(path=str(tmp_path / "t.tsv"), **{"text_column": "text", **target}))


def _raw(sst2_dir, **over):
    raw = {"name": "t", "dataset": {"source": str(sst2_dir)}, "features": {"ngrams": True},
           "selectors": [{"name": "random"}, {"name": "dsir"}], "grid": {"fractions": [0.1]}}
    raw.update(over)
    return raw


@pytest.mark.parametrize(("over", "match"), [
    ({}, r"selectors\[1\] \('dsir'\) selects toward a target: add a target: block"),
    ({"target": {"split": "validation", "path": "x.tsv"}}, r"target: give exactly one of path, "
                                                           r"split, holdout; got \['path', 'split'\]"),
    ({"target": {}}, r"give exactly one of path, split, holdout; got none"),
    ({"target": {"path": "/no/such/file.tsv"}}, r"target.path: path does not exist: /no/such/file.tsv"),
    ({"target": {"path": "t.tsv", "labelled": 5}}, r"labelled: 5 needs label_column for a path source"),
    ({"target": {"holdout": {"sentences": 10}}, "features": {}},
     r"selectors\[1\] \('dsir'\) reads feature 'ngram_buckets': set features.ngrams to true"),
])
def test_target_config_mistakes_are_one_line_each(sst2_dir, over, match):
    with pytest.raises(ConfigError, match=match):
        parse_study(_raw(sst2_dir, **over))


def test_preflight_names_a_missing_target_column_before_ray(sst2_dir, tmp_path):
    from dataselect.sweep.preflight import PreflightError, preflight

    (tmp_path / "t.tsv").write_text("review\nfine film\n")
    cfg = parse_study(_raw(sst2_dir, output_dir=str(tmp_path / "runs"), features={"encoder": "minilm", "ngrams": True},
                            trainer={"mode": "probe"}, target={"path": str(tmp_path / "t.tsv")}))
    with pytest.raises(PreflightError, match=r"target.text_column: column 'sentence' not in t.tsv"):
        preflight(cfg)
    assert not (tmp_path / "runs").exists()
