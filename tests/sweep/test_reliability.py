"""Nothing lost, nothing hidden: label names of any spelling, a failed report, failed selections.

Real sweeps through Ray Tune (probe trainer, 240-row pools) on SST-2 texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from dataselect.report import count_column, write_report
from dataselect.report.subsets import share_column
from dataselect.sweep.run import run_sweep

from .conftest import make_cfg, study_raw

pytestmark = pytest.mark.slow

# A slash, spaces, a hyphen, unicode, a digit first, a table pipe, a name that is
# another column's suffix ("train": n_train), and two names equal after sanitising.
NAMES = ["Sci/Tech", "Sci_Tech", "2nd-rate opinion", "naïve ü|x", "train"]


@pytest.fixture(scope="module")
def odd_labels(sst2_dir, tmp_path_factory):
    """SST-2 sentences with 5 string labels spelled as above, one TSV per split."""
    folder = tmp_path_factory.mktemp("odd-labels")
    for split, n in (("train", 400), ("validation", 200)):
        df = pd.read_csv(sst2_dir / f"{split}.tsv", sep="\t", quoting=3, nrows=n if split == "train" else None)
        df = df.head(n)
        rng = np.random.default_rng(len(split))
        df["label"] = [NAMES[k] for k in rng.integers(0, len(NAMES), len(df))]
        df.to_csv(folder / f"{split}.tsv", sep="\t", index=False, quoting=3)
    return folder


@pytest.fixture(scope="module")
def odd_study(odd_labels, tmp_path_factory, ray_tmp, ray_local):
    out = tmp_path_factory.mktemp("studies")
    raw = study_raw(odd_labels, out, "odd", ray_tmp=ray_tmp,
                    grid={"fractions": [0.25], "seeds": [0, 1], "full_reference": False})
    raw["dataset"] = {**raw["dataset"], "label_names": NAMES, "eval_size": 120}
    cfg = make_cfg(raw)
    return cfg, run_sweep(cfg)


def test_label_names_of_any_spelling_reach_every_table(odd_study):
    cfg, report = odd_study
    df = pd.read_csv(report.parent / "results.csv")
    ok = df[df["status"] == "TERMINATED"]
    assert len(ok) == 4
    counts = ok[[count_column(n) for n in NAMES]]
    assert (counts.sum(axis=1) == ok["n_train"]).all() and (counts > 0).all().all()
    assert (ok["n_train"] == 60).all()  # the class called "train" did not overwrite n_train
    kept = pd.read_csv(report.parent / "kept.csv")
    np.testing.assert_allclose(kept[[share_column(n) for n in NAMES]].sum(axis=1), 1.0)
    text = report.read_text()
    header = next(ln for ln in text.split("## What was kept")[1].splitlines() if ln.startswith("| selector"))
    cells = [c.strip() for c in header.replace("\\|", "\0").strip("|").split("|")]
    assert [c.replace("\0", "|") for c in cells[3:8]] == [f"{n} share" for n in NAMES]
    study = json.loads((cfg.study_dir / "study.json").read_text())
    assert study["dataset"]["label_names"] == NAMES
    for fig in ("forest.png", "efficiency.png", "overlap.png"):
        assert (report.parent / fig).read_bytes()[:4] == b"\x89PNG"


def test_label_names_become_distinct_tensorboard_tags(odd_study):
    cfg, report = odd_study
    row = pd.read_csv(report.parent / "results.csv").iloc[0]
    acc = EventAccumulator(str(cfg.study_dir / "tensorboard" / row["trial"]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("subset/class_share/")]
    assert sorted(tags) == sorted(f"subset/class_share/{t}" for t in
                                  ["Sci_Tech", "Sci_Tech~2", "2nd-rate_opinion", "naïve_ü_x", "train"])
    shares = {t.rsplit("/", 1)[1]: acc.Scalars(t)[0].value for t in tags}
    assert shares["Sci_Tech"] == pytest.approx(row[count_column("Sci/Tech")] / row["n_train"])
    assert shares["Sci_Tech~2"] == pytest.approx(row[count_column("Sci_Tech")] / row["n_train"])
    assert sum(shares.values()) == pytest.approx(1.0)


def test_a_failed_report_keeps_every_result_and_rebuilds_from_disk(sst2_dir, tmp_path, ray_tmp,
                                                                    ray_local, monkeypatch):
    """The trials finish, the report raises: one line, exit 1, results kept; then
    ``report`` writes it from disk without training anything again."""
    import yaml

    import dataselect.report as report_mod
    from dataselect.cli import app as cli_app

    raw = study_raw(sst2_dir, tmp_path / "out", "noreport", ray_tmp=ray_tmp,
                    grid={"fractions": [0.25], "seeds": [0, 1], "full_reference": False})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    study = make_cfg(raw).study_dir

    def broken(study_dir):
        raise KeyError("share_Sci/Tech")

    monkeypatch.setattr(report_mod, "write_report", broken)
    res = CliRunner().invoke(cli_app, ["sweep", str(path)])
    assert res.exit_code == 1, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "every result is kept" in errors[0] and f"python -m dataselect report {study}" in errors[0]
    assert "KeyError: 'share_Sci/Tech'" in errors[0] and "Traceback" not in res.stderr
    logged = Path(errors[0].split("traceback in ")[1].split(";")[0]).read_text()
    assert "Traceback" in logged and "share_Sci/Tech" in logged
    finished = sorted(p.parent.name for p in (study / "trials").glob("*/result.json"))
    assert len(finished) == 4 and not (study / "report" / "report.md").exists()
    attempts = {t: (study / "trials" / t / "attempts.jsonl").read_text() for t in finished}

    monkeypatch.undo()
    res = CliRunner().invoke(cli_app, ["report", str(study)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(study / "report" / "results.csv")
    assert sorted(df["trial"]) == finished and (df["status"] == "TERMINATED").all()
    assert {t: (study / "trials" / t / "attempts.jsonl").read_text() for t in finished} == attempts
    assert not list(study.glob(".report-*"))


def test_a_report_that_fails_half_way_leaves_the_previous_one_whole(odd_study, monkeypatch):
    cfg, report = odd_study
    before = {p.name: p.read_bytes() for p in report.parent.iterdir()}

    def fail(*a, **k):
        raise ValueError("figure failed")

    monkeypatch.setattr("dataselect.report.markdown.overlap_figure", fail)
    with pytest.raises(ValueError, match="figure failed"):
        write_report(cfg.study_dir)
    assert {p.name: p.read_bytes() for p in report.parent.iterdir()} == before
    assert not list(cfg.study_dir.glob(".report-*"))


def test_a_failed_selection_keeps_its_traceback(sst2_dir, tmp_path, ray_tmp, ray_local):
    """The selection's own traceback reaches the trial's error.txt and the sweep log."""
    raw = study_raw(sst2_dir, tmp_path, "badsel", ray_tmp=ray_tmp,
                    selectors=[{"name": "random"}, {"name": "kcenter", "label": "kc", "params": {"initial": list(range(61))}}],
                    grid={"fractions": [0.25], "seeds": [0], "full_reference": False})
    cfg = make_cfg(raw)
    run_sweep(cfg)
    err = (cfg.study_dir / "trials" / "kc_f0.25_s0" / "error.txt").read_text()
    assert "The selection's own traceback" in err and "in _select_task" in err
    log = next((cfg.study_dir / "logs").glob("sweep-*.log")).read_text()
    assert "selector kc (budget 60, seed 0) failed" in log and "Traceback" in log


def test_resume_of_an_experiment_tune_cannot_unpickle_reuses_the_trials(sst2_dir, tmp_path, ray_tmp, ray_local,
                                                                         monkeypatch, caplog):
    """Tune pickles its experiment state; one from another dataselect layout fails to load
    (ModuleNotFoundError). --resume then starts a new experiment and reuses every finished trial."""
    import logging

    from ray import tune

    raw = study_raw(sst2_dir, tmp_path, "unpickle", ray_tmp=ray_tmp,
                    grid={"fractions": [0.25], "seeds": [0, 1], "full_reference": False})
    cfg = make_cfg(raw)
    run_sweep(cfg)

    def old_pickle(*a, **k):
        raise ModuleNotFoundError("No module named 'dataselect.config'")

    monkeypatch.setattr(tune.Tuner, "restore", old_pickle)
    with caplog.at_level(logging.WARNING, logger="dataselect.sweep.run"):
        report = run_sweep(cfg, resume=True)
    assert "cannot restore the Tune experiment" in caplog.text and "dataselect.config" in caplog.text
    assert list((cfg.study_dir / "tune").glob("unpickle.unrestorable-*"))
    df = pd.read_csv(report.parent / "results.csv")
    assert len(df) == 4 and (df["status"] == "TERMINATED").all()
    for attempts in (cfg.study_dir / "trials").glob("*/attempts.jsonl"):
        assert len(attempts.read_text().splitlines()) == 1  # trained once, reused on resume


def test_a_study_adopts_the_trials_its_cache_dir_study_trained_on_the_same_rows(sst2_dir, tmp_path, ray_tmp,
                                                                                  ray_local):
    """cache_dir naming another study lends its trained trials: same rows, texts, trainer and
    seed -> adopted (same predictions, no training); a new seed or another trainer -> trained."""
    trainer = {"mode": "finetune", "model": "minilm", "epochs": 1.0, "batch_size": 16,
               "learning_rate": 5e-5, "max_length": 48, "eval_batch_size": 64}

    def study(name: str, seeds: list[int], **over: Any) -> Any:
        raw = study_raw(sst2_dir, tmp_path, name, ray_tmp=ray_tmp, selectors=[{"name": "random"}],
                        grid={"fractions": [0.2], "seeds": seeds, "full_reference": False},
                        trainer={**trainer, **over.pop("trainer", {})}, **over)
        raw["dataset"] = {**raw["dataset"], "pool_size": 80, "eval_size": 64}
        cfg = make_cfg(raw)
        return cfg, pd.read_csv(run_sweep(cfg).parent / "results.csv").set_index("seed")

    first, a = study("lender", [0, 1])
    second, b = study("borrower", [0, 1, 2], cache_dir=str(first.study_dir))
    assert b.loc[[0, 1], "reused_from"].str.startswith(str(first.study_dir.resolve())).all()
    assert b["reused_from"].isna().loc[2]
    for seed in (0, 1):
        assert b.loc[seed, "accuracy"] == a.loc[seed, "accuracy"]
        name = b.loc[seed, "trial"]
        ours = pd.read_parquet(second.study_dir / "trials" / name / "predictions.parquet")
        theirs = pd.read_parquet(first.study_dir / "trials" / name / "predictions.parquet")
        pd.testing.assert_frame_equal(ours, theirs)
        assert not (second.study_dir / "tensorboard" / name).exists()  # nothing was trained
    _, c = study("other-lr", [0], cache_dir=str(first.study_dir), trainer={"learning_rate": 1e-4})
    assert c["reused_from"].isna().all()
