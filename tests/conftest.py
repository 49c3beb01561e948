"""Shared fixtures: the real SST-2 copy beside the checkout, offline HF, a time budget per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub, whatever the environment says (HF_HUB_OFFLINE=0 in a
# developer's shell would let a fuzzed model id go out to it): forced, not defaulted,
# before any HF library reads them at import. Ray workers inherit the environment.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TIMEOUT_S = {"slow": 1200, "timing": 1200}
"""Per-marker time budget (seconds) of one test, setup and teardown included (pytest-timeout);
every other test has pyproject's ``timeout``. A test may set its own with
``@pytest.mark.timeout(N)``. A hung Ray test then fails in minutes, not CI's hours."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        budgets = [s for m, s in TIMEOUT_S.items() if item.get_closest_marker(m) is not None]
        if budgets:
            item.add_marker(pytest.mark.timeout(max(budgets)))

REPO = Path(__file__).resolve().parents[1]
SST2_DIR = REPO.parent / "shared" / "data" / "sst2"


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    if not (SST2_DIR / "train.tsv").is_file():
        pytest.fail(f"SST-2 copy not found at {SST2_DIR} (expected ../shared/data/sst2 beside the checkout)")
    return SST2_DIR
