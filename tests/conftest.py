"""Shared fixtures: the real SST-2 copy beside the checkout, offline HF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub: fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SST2_DIR = REPO.parent / "shared" / "data" / "sst2"


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    if not (SST2_DIR / "train.tsv").is_file():
        pytest.fail(f"SST-2 copy not found at {SST2_DIR} (expected ../shared/data/sst2 beside the checkout)")
    return SST2_DIR
