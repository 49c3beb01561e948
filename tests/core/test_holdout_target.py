"""The holdout rule (no phrase of a held-out sentence stays in the pool) and the target's sources."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
import pytest

from dataselect.core.config import DatasetConfig, HoldoutConfig, TargetConfig
from dataselect.core.data import frame_fingerprint, held_out_eval_id, load_dataset
from dataselect.core.errors import ConfigError, DataError
from dataselect.core.holdout import match_key, normalise, phrase_rows, split_holdout, whole_rows
from dataselect.sweep.study import parse_study

PHRASES = ["it is a gorgeous film .", "a gorgeous film", "gorgeous", "film", "it is",
           "a dull mess", "dull", "a dull mess", "the cast is fine", "cast"]


@pytest.mark.parametrize("match", ["whitespace", "punctuation"])
def test_whole_rows_are_no_phrase_of_a_longer_row(match):
    assert whole_rows(PHRASES, match).tolist() == [True, False, False, False, False,
                                                   True, False, True, True, False]


@pytest.mark.parametrize("match", ["whitespace", "punctuation"])
def test_phrase_rows_match_on_token_boundaries_only(match):
    got = phrase_rows(["film", "a gorgeous", "gorgeous film .", "fil", "is a", "it  is"],
                      ["it is a gorgeous film ."], match)
    assert got.tolist() == [True, True, True, False, True, True]


def test_the_punctuation_key_merges_sst_s_two_tokenisations():
    """SST writes one sentence as "etc ." and as "etc. .": the whitespace key keeps both
    apart, so a held-out sentence left its twin (and its twin's phrases) in the pool."""
    sentence = "lots of boring talking heads , etc. -- to do the subject justice"
    twin, phrase, other = ("lots of boring talking heads , etc -- to do the subject justice .",
                           "talking heads , etc", "etc etc")
    assert match_key("etc. .") == match_key("etc .") == "etc" and match_key(" -- ") == ""
    assert match_key("smart-aleck `` movie ''") == "smartaleck movie"
    rows = [twin, phrase, other, "--", "a -- b"]
    assert phrase_rows(rows, [sentence], "whitespace").tolist() == [False, False, False, True, False]
    assert phrase_rows(rows, [sentence], "punctuation").tolist() == [True, True, False, True, False]
    # one sentence under two tokenisations is one candidate: a draw cannot split them
    held, removed = split_holdout([sentence, twin, "a different sentence"], [(2, 0)], "punctuation")
    assert len({match_key(t) for t in np.array([sentence, twin, "a different sentence"])[held[0]]}) == 2
    assert removed.sum() == 3
    with pytest.raises(ValueError, match="2 held-out sentences asked for, but the pool has only 1"):
        split_holdout([sentence, twin], [(2, 0)], "punctuation")
    assert len(split_holdout([sentence, twin], [(2, 0)], "whitespace")[0][0]) == 2


@pytest.fixture(scope="module")
def sst2_texts(sst2_dir):
    return load_dataset(DatasetConfig(source=str(sst2_dir))).train["text"].tolist()


@pytest.mark.parametrize("match", ["whitespace", "punctuation"])
def test_no_pool_row_is_a_phrase_of_a_held_out_sentence(sst2_texts, match):
    """The rule, proven on SST-2 by brute force: every token-boundary substring
    check of every remaining pool row against every held-out sentence fails
    (under the rule's key; a row of punctuation only by its whitespace key)."""
    (held_eval, held_target), removed = split_holdout(sst2_texts, [(400, 0), (150, 1)], match)
    assert len(held_eval) == 400 and len(held_target) == 150
    assert not set(held_eval) & set(held_target)
    whole = whole_rows(sst2_texts, match)
    assert whole[held_eval].all() and whole[held_target].all()
    held = np.concatenate([held_eval, held_target])
    assert len({match_key(sst2_texts[i], match) for i in held}) == len(held)  # distinct sentences

    def key(t: str) -> str:
        return match_key(t, match) or normalise(t)

    haystack = " \n ".join(normalise(sst2_texts[i]) for i in held)
    keystack = " \n ".join(match_key(sst2_texts[i], match) for i in held)

    def inside(t: str) -> bool:
        return f" {key(t)} " in f" {keystack if match_key(t, match) else haystack} "

    pool = [t for t, r in zip(sst2_texts, removed, strict=True) if not r]
    assert not any(inside(t) for t in pool)
    # and everything removed is such a phrase (nothing else left the pool)
    assert all(inside(t) for t, r in zip(sst2_texts, removed, strict=True) if r)
    again = split_holdout(sst2_texts, [(400, 0), (150, 1)], match)
    np.testing.assert_array_equal(again[0][0], held_eval)
    np.testing.assert_array_equal(again[1], removed)


def test_the_whitespace_rule_leaves_near_copies_of_held_out_sentences_in_the_pool(sst2_texts):
    """experiments/target.yaml's holdout (3,000 eval + 1,000 target sentences) under the
    whitespace rule keeps pool rows that are punctuation variants of held-out phrases;
    the punctuation rule, given the same sentences, takes them out, and as the default
    (its own draw) leaves none either. The counts are the README's."""
    draws = [(3000, 0), (1000, 1)]
    held, removed = split_holdout(sst2_texts, draws, "whitespace")
    sentences = [sst2_texts[i] for h in held for i in h]
    near = phrase_rows(sst2_texts, sentences, "punctuation") & ~removed
    assert len(sst2_texts) - removed.sum() == 27_192 and near.sum() == 161
    assert not phrase_rows(np.asarray(sst2_texts)[~removed], sentences, "whitespace").any()
    held_p, removed_p = split_holdout(sst2_texts, draws, "punctuation")
    assert len(sst2_texts) - removed_p.sum() == 26_346
    left = np.asarray(sst2_texts)[~removed_p]
    assert not phrase_rows(left, [sst2_texts[i] for h in held_p for i in h], "punctuation").any()


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
    assert len(ds.target.frame) == 872 and ds.target.labelled and ds.target.n_in_eval == 872
    assert ds.target.eval_labels == 0  # no labels granted (target.labelled: 0)


def test_transductive_is_found_by_text_not_by_the_source_s_name(tmp_path, sst2_dir):
    """A target file that holds eval sentences (retokenised, so only the holdout key
    finds them) is transductive; a held-out target never is."""
    cfg = DatasetConfig(source=str(sst2_dir), pool_size=500)
    plain = load_dataset(cfg)
    evals = plain.eval["text"].head(2).tolist()
    texts = [evals[0], evals[1].replace(" ,", ",").replace(" .", "."), "an unseen sentence about a film ."]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    ds = load_dataset(cfg, TargetConfig(path=str(tmp_path / "t.tsv"), text_column="text"))
    assert ds.target.transductive and ds.target.n_in_eval == 2
    assert ds.target.describe()["n_in_eval"] == 2
    held = load_dataset(DatasetConfig(source=str(sst2_dir), eval_holdout=HoldoutConfig(sentences=200)),
                        TargetConfig(holdout=HoldoutConfig(sentences=100, seed=1)))
    assert not held.target.transductive and held.target.n_in_eval == 0


def test_a_train_split_target_loses_the_held_out_eval_sentences(sst2_dir, caplog):
    """``target: {split: train}`` read the raw train split: every held-out eval sentence
    (and its phrases) reached the target-aware selectors. Now they are dropped."""
    from dataselect.core.holdout import phrase_rows

    caplog.set_level(logging.INFO, logger="dataselect.core.data")
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), eval_holdout=HoldoutConfig(sentences=200, seed=3)),
                      TargetConfig(split="train"))
    raw = load_dataset(DatasetConfig(source=str(sst2_dir))).train
    held = ds.eval[ds.eval["id"] < 0]
    target = ds.target.frame
    assert not phrase_rows(target["text"].tolist(), held["text"].tolist()).any()
    assert not set(held["text"]) & set(target["text"])
    # what is left is the train split less exactly the rows the holdout took out of the pool
    assert len(target) == len(raw) - ds.holdout["removed_rows"] == len(ds.train)
    assert set(target["id"]) == set(ds.train["id"])
    assert ds.target.info["dropped_held_out"] == ds.holdout["removed_rows"]
    eval_keys = {match_key(t) for t in ds.eval["text"]}
    assert ds.target.n_in_eval == sum(match_key(t) in eval_keys for t in target["text"])
    assert "are not in the target" in caplog.text


def test_eval_labels_handed_to_a_selector_are_counted_and_reported(sst2_dir):
    """``target: {split: validation, labelled: N}`` gives gradient_match N eval labels:
    the data says how many, and the report's setup says "eval labels"."""
    from dataselect.report.markdown import _target_lines

    ds = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=500),
                      TargetConfig(split="validation", labelled=40))
    assert ds.target.eval_labels == 40 and ds.target.describe()["eval_labels"] == 40
    ok = pd.DataFrame({"selector": ["gradient_match"], "selection_seconds": [1.0],
                       "selection_info": ['{"target_labels": "given (40 labelled target rows)"}']})
    text = "\n".join(_target_lines(ds.target.describe(), None, ok, ["gradient_match"]))
    assert "40 eval labels" in text and "transductive" in text
    none = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=500), TargetConfig(split="validation"))
    assert "eval labels" not in "\n".join(_target_lines(none.target.describe(), None, ok, ["gradient_match"]))


def test_the_validation_holdout_is_a_third_disjoint_draw(sst2_dir):
    """Rows disjoint from the eval set, the target and the pool (no phrase of one left in
    it); adding it moves neither earlier draw; without it the data's key is unchanged."""
    base = DatasetConfig(source=str(sst2_dir), eval_holdout=HoldoutConfig(sentences=300, seed=2))
    target = TargetConfig(holdout=HoldoutConfig(sentences=100, seed=5))
    before = load_dataset(base, target)
    ds = load_dataset(base.model_copy(update={"validation_holdout": HoldoutConfig(sentences=150, seed=7)}),
                      target)
    val = ds.validation
    assert before.validation is None and len(val) == 150 and (val["id"] < 0).all()
    pd.testing.assert_frame_equal(ds.eval, before.eval)
    pd.testing.assert_frame_equal(ds.target.frame, before.target.frame)
    keys = {match_key(t) for t in val["text"]}
    assert not keys & {match_key(t) for t in ds.eval["text"]}
    assert not keys & {match_key(t) for t in ds.target.frame["text"]}
    assert not phrase_rows(ds.train["text"].tolist(), val["text"].tolist()).any()
    assert len(ds.train) == len(before.train) - (ds.holdout["removed_rows"] - before.holdout["removed_rows"])
    assert ds.holdout["validation_sentences"] == 150 and ds.fingerprint != before.fingerprint
    old_key = hashlib.sha256((frame_fingerprint(before.train) + frame_fingerprint(before.eval)).encode())
    assert before.fingerprint == old_key.hexdigest()
    train = load_dataset(DatasetConfig(source=str(sst2_dir))).train.set_index("id")
    assert (train.loc[-1 - val["id"].to_numpy(), "label"].to_numpy() == val["label"].to_numpy()).all()


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
