"""scripts/kept_noise.py: the suspect rows are the ones whose label the cross-fitted probe contradicts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def test_flipped_labels_on_separable_embeddings_are_the_suspects(tmp_path):
    spec = importlib.util.spec_from_file_location("kept_noise", REPO / "scripts" / "kept_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 300)
    emb = rng.normal(size=(600, 8)) + 4.0 * y[:, None]  # two well-separated classes
    flipped = rng.choice(600, 30, replace=False)
    label = y.copy()
    label[flipped] = 1 - label[flipped]
    (tmp_path / "inputs" / "target").mkdir(parents=True)
    ids = np.arange(1000, 1600)
    pd.DataFrame({"id": ids, "label": label}).to_parquet(tmp_path / "inputs" / "pool.parquet")
    np.save(tmp_path / "inputs" / "target" / "pool_embedding.npy", emb.astype(np.float32))
    suspect = mod.suspect_rows(tmp_path)
    assert set(suspect.index[suspect.to_numpy()]) == set(ids[flipped])
