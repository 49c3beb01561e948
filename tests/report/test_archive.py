"""A study archive on a hand-built study folder: the report from it alone equals the report
from the folder, every per-row file comes back bit for bit, and a damaged archive is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataselect.core.errors import CacheError, UserError
from dataselect.report import write_report
from dataselect.report.archive import FILES, Archive, write_archive
from dataselect.sweep.trial import write_trial_files
from dataselect.train import EvalPredictions

M, SEEDS, N_POOL, D = 400, (0, 1, 2), 600, 8
REPORT = ("results.csv", "summary.csv", "kept.csv", "overlap.csv", "headline.txt")


def _trial(study: Path, name: str, selector: str, seed: int, *, result: dict | None = None,
           error: str | None = None) -> None:
    tdir = study / "tune" / "s" / name
    tdir.mkdir(parents=True)
    (tdir / "params.json").write_text(json.dumps({"cell": {"selector": selector, "name": selector,
                                                           "params": {}, "fraction": 0.1}, "seed": seed}))
    if result is not None:
        (tdir / "result.json").write_text(json.dumps({**result, "config": {"seed": seed}}) + "\n")
    if error is not None:
        (tdir / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """random and `better` (3 % more rows right) x 3 seeds with class probabilities, a failed and
    an unstarted trial, a held-out target (embeddings in inputs/target/)."""
    study = tmp_path_factory.mktemp("runs") / "s"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, M)
    eval_ids = rng.permutation(10_000)[:M]  # not 0..M-1: ids are carried, not implied
    pool = pd.DataFrame({"id": np.arange(N_POOL) * 3, "label": rng.integers(0, 2, N_POOL),
                         "n_words": rng.integers(1, 30, N_POOL).astype(np.int32),
                         "perplexity": rng.gamma(2.0, 50.0, N_POOL)})
    emb = rng.normal(size=(N_POOL, D)).astype(np.float32)
    for seed in SEEDS:
        base = np.where(rng.random(M) < 0.75, y, 1 - y)
        better = base.copy()
        fix = np.flatnonzero(base != y)[: int(0.03 * M)]
        better[fix] = y[fix]
        for sel, pred, rows in (("random", base, pool.sample(60, random_state=seed)),
                                ("better", better, pool.sort_values("n_words").head(60 + seed))):
            name = f"{sel}_f0.1_s{seed}"
            acc = float((pred == y).mean())
            p1 = np.clip(np.where(pred == 1, 0.5 + rng.random(M) / 2, rng.random(M) / 2), 0, 1)
            proba = np.stack([1 - p1, p1], 1).astype(np.float32)
            proba[:, 0] += rng.normal(0, 1e-7, M).astype(np.float32)  # not exactly 1 - p1
            res = {"accuracy": acc, "macro_f1": acc, "precision": acc, "recall": acc, "budget": len(rows),
                   "n_train": len(rows), "class_counts": np.bincount(rows["label"], minlength=2).tolist(),
                   "missing_classes": [], "selection_seconds": 0.01 * (seed + 1), "mode": "finetune",
                   "compute_dtype": "fp32", "train_seconds": 3.0, "eval_seconds": 1.0}
            _trial(study, name, sel, seed, result=res)
            out = study / "trials" / name
            out.mkdir(parents=True)
            evalf = pd.DataFrame({"id": eval_ids, "label": y})
            write_trial_files(out, "h", evalf, EvalPredictions(pred, proba), rows)
            (out / "result.json").write_text(json.dumps({"config_hash": "h", "result": res}))
    _trial(study, "broken_f0.1_s0", "broken", 0, error="ValueError: no rows")
    _trial(study, "late_f0.1_s0", "late", 0)
    tgt = study / "inputs" / "target"
    tgt.mkdir(parents=True)
    pool.to_parquet(study / "inputs" / "pool.parquet")
    np.save(tgt / "pool_embedding.npy", emb)
    np.save(tgt / "target_embedding.npy", rng.normal(0.3, 1.0, size=(80, D)).astype(np.float32))
    np.save(tgt / "eval_embedding.npy", rng.normal(size=(M, D)).astype(np.float32))
    pd.DataFrame({"n_words": rng.integers(5, 30, 80)}).to_parquet(tgt / "target.parquet")
    (study / "study.json").write_text(json.dumps({
        "name": "s", "n_trials": 8,
        "config": {"grid": {"seeds": list(SEEDS), "fractions": [0.1]},
                   "trainer": {"mode": "finetune", "model": "minilm", "batch_size": 16, "epochs": 1}},
        "dataset": {"n_pool": N_POOL, "n_eval": M, "label_names": ["neg", "pos"]},
        "target": {"source": "holdout", "n_rows": 80, "mean_words": 17.0}}))
    write_report(study)
    arch = write_archive(study, tmp_path_factory.mktemp("reports") / "s", keys={"random_f0.1_s0": "k0"})
    return study, arch


def test_report_from_the_archive_alone_equals_the_report_from_the_study_folder(study, tmp_path):
    runs, arch = study
    gone = tmp_path / "elsewhere"
    shutil.copytree(arch, gone)  # and the study folder is out of reach: only the archive's files
    report = write_report(gone)
    assert report == gone / "report.md"
    for name in REPORT:
        assert (gone / name).read_bytes() == (runs / "report" / name).read_bytes(), name
    kept = pd.read_csv(gone / "kept.csv")
    assert kept["target_auc"].between(0, 1).all() and kept["eval_auc"].between(0, 1).all()
    res = pd.read_csv(gone / "results.csv").set_index("trial")
    assert res.loc["broken_f0.1_s0", "status"] == "ERROR" and res.loc["broken_f0.1_s0", "error"] == "ValueError: no rows"
    assert res.loc["late_f0.1_s0", "status"] == "INCOMPLETE"
    text = report.read_text()
    assert "TensorBoard logs stayed with its runs" in text and "tensorboard --logdir" not in text
    # Files that are not the report's (compare's regimes.md) are left alone; a rewrite is the same.
    (gone / "regimes.md").write_text("kept")
    first = (gone / "summary.csv").read_bytes()
    write_report(gone)
    assert (gone / "summary.csv").read_bytes() == first and (gone / "regimes.md").read_text() == "kept"


def test_every_trial_file_comes_back_bit_for_bit(study):
    runs, arch = study
    a = Archive(arch)
    trials = [t for t in a.trials if (runs / "trials" / t).is_dir()]
    assert len(trials) == 6
    for kind in ("predictions.parquet", "kept.parquet"):
        frames = a.frames(trials, kind)
        for t in trials:
            pd.testing.assert_frame_equal(frames[t], pd.read_parquet(runs / "trials" / t / kind), check_exact=True)
    t = a.trial("random_f0.1_s0")
    assert t.seed == 0 and t.training_key == "k0" and t.result["n_train"] == 60
    assert a.trial("random_f0.1_s1").training_key is None  # not given a key: report only
    assert a.trial("broken_f0.1_s0") is None and a.trial("nope") is None


def test_archive_is_much_smaller_than_its_per_row_files(study):
    runs, arch = study
    size = sum((arch / f).stat().st_size for f in FILES)
    per_row = sum(p.stat().st_size for p in (runs / "trials").rglob("*.parquet"))
    assert size < per_row / 2


@pytest.mark.parametrize("victim", FILES)
def test_a_damaged_archive_is_refused_naming_the_file(study, tmp_path, victim):
    _, arch = study
    bad = tmp_path / "bad"
    shutil.copytree(arch, bad)
    data = bytearray((bad / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / victim).write_bytes(bytes(data))
    with pytest.raises(CacheError, match=f"{victim} is not the file archive.json lists"):
        Archive(bad)


def test_report_command_takes_an_archive_and_says_one_line_when_it_is_damaged(study, tmp_path, capsys):
    from dataselect.cli import main

    _, arch = study
    bad = tmp_path / "bad"
    shutil.copytree(arch, bad)
    with (bad / "trials.parquet").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: archive: ") and "trials.parquet" in err[0]


def test_a_pool_row_kept_with_two_values_is_refused(study, tmp_path):
    runs, _ = study
    other = tmp_path / "s"
    shutil.copytree(runs, other)
    rows = pd.read_parquet(runs / "trials" / "random_f0.1_s0" / "kept.parquet")
    rows.to_parquet(other / "trials" / "better_f0.1_s0" / "kept.parquet")  # both keep these rows...
    rows.loc[0, "n_words"] += 1  # ...but one says another length for the first
    rows.to_parquet(other / "trials" / "random_f0.1_s0" / "kept.parquet")
    with pytest.raises(UserError, match=f"pool row {rows['id'].iloc[0]} differs between the kept.parquet of "
                                        "trials better_f0.1_s0 and random_f0.1_s0"):
        write_archive(other, tmp_path / "out")


def test_report_takes_a_config_as_every_other_command_does(study, tmp_path, capsys):
    import yaml

    from dataselect.cli import main

    runs, arch = study
    cfg = {"name": "s", "output_dir": str(runs.parent), "selectors": [{"name": "random"}],
           "grid": {"fractions": [0.1]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "s.yaml")])
    assert exc.value.code == 0 and f"report: {runs / 'report' / 'report.md'}" in capsys.readouterr().out
    # not run here and no archive: one line naming both places looked at
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({**cfg, "name": "t", "archive": str(tmp_path / "none")}))
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "t.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert err[0] == (f"error: study_dir: {tmp_path / 't.yaml'}: the study has not run here ({runs.parent / 't'} "
                      f"has no study.json) and {tmp_path / 'none'} holds no archive")
