"""Tiny real studies on SST-2 rows: configs and one local Ray per test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataselect.core.config import StudyConfig
from dataselect.sweep.study import parse_study


def study_raw(sst2_dir: Path, out: Path, name: str, *, ray_tmp: Path, **over: Any) -> dict[str, Any]:
    """A probe study on a 240-row SST-2 pool with MiniLM features; ``over`` replaces sections."""
    raw: dict[str, Any] = {
        "name": name,
        "output_dir": str(out),
        "dataset": {"source": str(sst2_dir), "pool_size": 240, "eval_size": 160},
        "features": {"encoder": "minilm", "perplexity_model": None, "text_metrics": False,
                     "max_length": 64, "batch_size": 64},
        "selectors": [{"name": "random"}, {"name": "kcenter"}],
        "grid": {"fractions": [0.1, 0.25], "seeds": [0, 1], "full_reference": True},
        "trainer": {"mode": "probe", "probe": "logreg", "model": "minilm"},
        "ray": {"num_cpus": 2, "cpus_per_trial": 1, "temp_dir": str(ray_tmp)},
    }
    raw.update(over)
    return raw


def short_tmp() -> Path:
    """A fresh /tmp/ds-XXXX folder: Ray's unix sockets live under its temp dir
    (AF_UNIX paths are limited to 107 bytes), too deep under pytest's tmp_path."""
    return Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))


@pytest.fixture(scope="session")
def ray_tmp() -> Iterator[Path]:
    path = short_tmp()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local(ray_tmp: Path):
    """One local Ray for the in-process sweep tests (ray.init costs ~3.5 s)."""
    import ray

    from dataselect.core.config import RayConfig
    from dataselect.sweep.ray_runtime import init_ray

    init_ray(RayConfig(num_cpus=2, temp_dir=str(ray_tmp)))
    yield
    ray.shutdown()


def make_cfg(raw: dict[str, Any]) -> StudyConfig:
    return parse_study(raw)
