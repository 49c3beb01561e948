"""Small real SST-2 slices for trainer tests (read straight from the shared copy)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest


def read_sst2(path: Path, n: int) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, nrows=n, keep_default_na=False)
    df = df.rename(columns={"sentence": "text"})
    df.insert(0, "id", range(len(df)))
    return df.astype({"id": "int64", "label": "int64"})


@pytest.fixture(scope="session")
def sst2_train(sst2_dir: Path) -> pd.DataFrame:
    return read_sst2(sst2_dir / "train.tsv", 400)


@pytest.fixture(scope="session")
def sst2_eval(sst2_dir: Path) -> pd.DataFrame:
    return read_sst2(sst2_dir / "validation.tsv", 200)
