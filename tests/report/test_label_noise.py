"""Seeded label noise on the pool: exact counts, the kinds' rules, eval untouched, bad configs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataselect.core.config import DatasetConfig, LabelNoiseConfig
from dataselect.core.data import add_label_noise, load_dataset
from dataselect.core.errors import ConfigError
from dataselect.sweep.study import parse_study


def _pool(n: int, k: int) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(10, 10 + n), "text": [f"t{i}" for i in range(n)],
                         "label": np.arange(n) % k})


@pytest.mark.parametrize("k", [2, 4])
def test_uniform_flips_exact_count_to_other_classes(k):
    pool = _pool(4000, k)
    noisy, flips = add_label_noise(pool, LabelNoiseConfig(rate=0.2, seed=3), k)
    changed = noisy["label"].to_numpy() != pool["label"].to_numpy()
    assert changed.sum() == len(flips) == 800
    assert set(flips["id"]) == set(pool["id"][changed])
    assert (flips["original_label"] != flips["noisy_label"]).all()
    at = pool.set_index("id").loc[flips["id"], "label"].to_numpy()
    assert np.array_equal(at, flips["original_label"].to_numpy())
    if k == 4:  # each wrong class gets about a third of the flips
        offsets = (flips["noisy_label"] - flips["original_label"]) % k
        share = np.bincount(offsets, minlength=k)[1:] / len(flips)
        assert np.all(np.abs(share - 1 / 3) < 0.06)
    assert noisy["id"].equals(pool["id"]) and noisy["text"].equals(pool["text"])


def test_asymmetric_is_one_fixed_permutation():
    pool = _pool(999, 3)
    noisy, flips = add_label_noise(pool, LabelNoiseConfig(rate=0.1, kind="asymmetric"), 3)
    assert len(flips) == 100
    assert ((flips["original_label"] + 1) % 3 == flips["noisy_label"]).all()


def test_same_seed_same_flips_other_seed_other_rows():
    pool = _pool(500, 2)
    a = add_label_noise(pool, LabelNoiseConfig(rate=0.3, seed=1), 2)[1]
    b = add_label_noise(pool, LabelNoiseConfig(rate=0.3, seed=1), 2)[1]
    c = add_label_noise(pool, LabelNoiseConfig(rate=0.3, seed=2), 2)[1]
    pd.testing.assert_frame_equal(a, b)
    assert set(a["id"]) != set(c["id"])
    assert len(add_label_noise(pool, LabelNoiseConfig(rate=0.0), 2)[1]) == 0


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_flips_are_independent_of_a_selectors_draw_with_the_same_seed(seed):
    """Regression: noise seed s and `random` seed s once drew the same rows (100 % flipped subset)."""
    from dataselect.selectors import get_selector

    pool = _pool(20000, 2)
    noisy, flips = add_label_noise(pool, LabelNoiseConfig(rate=0.2, seed=seed), 2)
    feats = {"id": noisy["id"].to_numpy(), "label": noisy["label"].to_numpy()}
    for budget in (500, 2000):
        picked = noisy["id"].to_numpy()[get_selector("random").select(feats, budget, seed=seed).indices]
        share = np.isin(picked, flips["id"]).mean()
        assert abs(share - 0.2) < 0.06, (budget, share)


def test_load_dataset_flips_pool_only(sst2_dir):
    clean = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=1000))
    noisy = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=1000,
                                       label_noise={"rate": 0.2, "seed": 0}))
    assert noisy.noise is not None and len(noisy.noise) == 200 and clean.noise is None
    pd.testing.assert_frame_equal(noisy.eval, clean.eval)
    assert noisy.train["id"].equals(clean.train["id"])
    assert (noisy.train["label"] != clean.train["label"]).sum() == 200
    assert noisy.fingerprint != clean.fingerprint


def _raw(sst2_dir, noise):
    return {"name": "n", "dataset": {"source": str(sst2_dir), "label_noise": noise},
            "selectors": [{"name": "random"}], "grid": {"fractions": [0.1]}}


@pytest.mark.parametrize(("noise", "message"), [
    ({"rate": 1.0}, "dataset.label_noise.rate: Input should be less than 1"),
    ({"rate": -0.1}, "dataset.label_noise.rate: Input should be greater than or equal to 0"),
    ({"rate": "lots"}, "dataset.label_noise.rate: Input should be a valid number"),
    ({"rate": 0.1, "kind": "pairwise"}, "dataset.label_noise.kind: Input should be 'uniform' or 'asymmetric'"),
    ({"rate": 0.1, "split": "validation"}, "dataset.label_noise.split: label noise applies to the "
                                           "training pool only"),
    ({"rate": 0.1, "eval": True}, "dataset.label_noise.eval: unknown key"),
    ({}, "dataset.label_noise.rate: required field is missing"),
])
def test_bad_noise_config_is_one_line(sst2_dir, noise, message):
    with pytest.raises(ConfigError) as info:
        parse_study(_raw(sst2_dir, noise))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cache_dir_moves_features_and_standins_out_of_the_study(sst2_dir, tmp_path):
    from pathlib import Path

    raw = _raw(sst2_dir, {"rate": 0.2})
    raw["output_dir"] = str(tmp_path)
    assert parse_study(raw).cache_root == tmp_path / "n"
    raw["cache_dir"] = str(tmp_path / "clean")
    assert parse_study(raw).cache_root == Path(tmp_path / "clean")
