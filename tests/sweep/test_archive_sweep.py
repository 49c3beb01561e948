"""A real fine-tune study on SST-2 archived, its runs folder gone: the report from the archive
alone has the same statistics, and a sweep on a fresh folder adopts every archived trial whose
key it recomputes from its own texts (and none whose rows, texts or trainer differ)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from dataselect.cli import main
from dataselect.report.archive import Archive
from dataselect.sweep.run import run_sweep
from dataselect.sweep.trial import reused_archived, trainer_key, training_key

from .conftest import make_cfg, study_raw

pytestmark = pytest.mark.slow

TRAINER = {"mode": "finetune", "model": "minilm", "epochs": 1.0, "batch_size": 16, "learning_rate": 5e-5,
           "max_length": 48, "eval_batch_size": 64}
SAME = ("results.csv", "summary.csv", "kept.csv", "overlap.csv", "cost.csv", "headline.txt")


def _raw(sst2_dir, out, ray_tmp, **over):
    raw = study_raw(sst2_dir, out, "arch", ray_tmp=ray_tmp,
                    selectors=[{"name": "random"}, {"name": "kcenter"},
                               {"name": "kcenter", "label": "kc_broken", "params": {"initial": list(range(61))}}],  # its selection fails
                    grid={"fractions": [0.1], "seeds": [0, 1], "full_reference": False}, trainer=TRAINER,
                    target={"holdout": {"sentences": 60, "seed": 1}}, **over)
    raw["dataset"] = {**raw["dataset"], "pool_size": 400, "eval_size": 120, "eval_holdout": {"sentences": 60}}
    return raw


def _cli(*args: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 0


@pytest.fixture(scope="module")
def archived(sst2_dir, tmp_path_factory, ray_tmp, ray_local):
    """The study ran, was archived, and its runs folder moved out of reach."""
    root = tmp_path_factory.mktemp("archive")
    cfg = make_cfg(_raw(sst2_dir, root / "runs", ray_tmp))
    run_sweep(cfg)
    _cli("archive", str(cfg.study_dir), "--out", str(root / "reports" / "arch"), "--no-report")
    gone = root / "gone"
    cfg.study_dir.rename(gone)  # no runs/ from here on
    return root, gone, root / "reports" / "arch"


def test_report_from_the_archive_alone_has_the_statistics_of_the_runs_report(archived, capsys):
    root, gone, arch = archived
    _cli("report", str(arch))
    assert f"report: {arch / 'report.md'}" in capsys.readouterr().out
    for name in SAME:
        assert (arch / name).read_bytes() == (gone / "report" / name).read_bytes(), name
    summary = pd.read_csv(arch / "summary.csv")
    assert set(summary["selector"]) == {"random", "kcenter"} and summary["delta"].notna().any()
    kept = pd.read_csv(arch / "kept.csv")
    assert kept["target_auc"].between(0, 1).all()  # measured on embeddings the archive does not hold
    res = pd.read_csv(arch / "results.csv")
    assert (res.loc[res["selector"] == "kc_broken", "status"] == "ERROR").all()
    assert not (arch / "inputs").exists() and not (arch / "trials").exists()


def test_report_takes_the_config_and_finds_the_archive(archived, sst2_dir, ray_tmp, tmp_path, capsys):
    root, _, arch = archived
    raw = _raw(sst2_dir, root / "runs", ray_tmp, archive=str(arch))
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(raw))
    _cli("report", str(tmp_path / "arch.yaml"))  # runs/arch is gone: the archive is reported
    assert f"report: {arch / 'report.md'}" in capsys.readouterr().out


def test_a_fresh_sweep_adopts_every_archived_trial_with_its_key(archived, sst2_dir, ray_tmp):
    root, gone, arch = archived
    cfg = make_cfg(_raw(sst2_dir, root / "fresh", ray_tmp, archive=str(arch)))
    report = run_sweep(cfg, resume=True)
    df = pd.read_csv(report.parent / "results.csv")
    ok = df[df["status"] == "TERMINATED"]
    assert len(ok) == 4 and ok["reused_from"].str.startswith(str((arch / "trials.parquet").resolve())).all()
    for name in ok["trial"]:
        for kind in ("predictions.parquet", "kept.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(cfg.study_dir / "trials" / name / kind),
                                          pd.read_parquet(gone / "trials" / name / kind), check_exact=True)
        assert not (cfg.study_dir / "tensorboard" / name).exists()  # nothing was trained
    summary = pd.read_csv(report.parent / "summary.csv")
    pd.testing.assert_frame_equal(summary, pd.read_csv(gone / "report" / "summary.csv"))


def test_an_archived_key_is_recomputed_from_this_studys_texts_never_trusted(archived, sst2_dir, ray_tmp):
    root, gone, arch = archived
    inputs = gone / "inputs"
    pool = pd.read_parquet(inputs / "pool.parquet")
    evalf = pd.read_parquet(inputs / "eval.parquet")
    meta = json.loads((arch / "study.json").read_text())
    name = "random_f0.1_s0"
    got = Archive(arch).trial(name)
    pos = pd.Index(pool["id"]).get_indexer(got.kept)

    def key(trainer=meta["config"]["trainer"], rows=pool.iloc[pos], ev=evalf, seed=0):
        return training_key(trainer_key(trainer, "fp32"), seed, 2, rows, ev)

    right = key()
    assert right == got.training_key
    assert reused_archived(arch, name, right, 0, 2, pool, evalf) is not None
    # another learning rate, another seed: other keys, nothing adopted
    assert reused_archived(arch, name, key({**meta["config"]["trainer"], "learning_rate": 1e-4}), 0, 2,
                           pool, evalf) is None
    assert reused_archived(arch, name, key(seed=1), 1, 2, pool, evalf) is None
    # this study's text of one kept row differs: even asked with the archive's own key, refused
    edited = pool.copy()
    edited.loc[pos[0], "text"] = edited.loc[pos[0], "text"] + " !"
    assert reused_archived(arch, name, right, 0, 2, edited, evalf) is None
    # a relabelled eval row: the archived predictions are not of this eval set
    ev = evalf.copy()
    ev.loc[0, "label"] = 1 - ev.loc[0, "label"]
    assert reused_archived(arch, name, key(ev=ev), 0, 2, pool, ev) is None


def test_a_damaged_archive_stops_the_sweep_before_ray(archived, sst2_dir, ray_tmp, tmp_path, capsys):
    root, _, arch = archived
    bad = tmp_path / "bad"
    shutil.copytree(arch, bad)
    with (bad / "pool_rows.parquet").open("ab") as fh:
        fh.write(b"\0")
    raw = _raw(sst2_dir, tmp_path / "runs", ray_tmp, archive=str(bad))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(tmp_path / "bad.yaml")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: archive: ") and "pool_rows.parquet" in err[-1]
    assert not (tmp_path / "runs" / "arch" / "tune").exists()


def test_archive_command_refuses_what_is_not_a_study_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["archive", str(tmp_path / "empty")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: study_dir: {tmp_path / 'empty'} has no study.json; is it a study folder (runs/<name>)?"


def test_kept_ids_are_in_pick_order(archived):
    _, gone, arch = archived
    got = Archive(arch).trial("kcenter_f0.1_s1")
    assert np.array_equal(got.kept, pd.read_parquet(gone / "trials" / "kcenter_f0.1_s1" / "kept.parquet")["id"])
