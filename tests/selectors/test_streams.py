"""Selector random streams (issue 36 item 5): under ``shared`` a selector's internal draw at a
seed is random's subset at that seed; under ``own`` it overlaps random's only by chance, and
random's own subsets are the same in both modes."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.core.errors import InvalidParameterError
from dataselect.selectors.base import stream_seed
from dataselect.selectors.registry import get_selector

N, FRACTION = 20_000, 0.05


def _random_subset(seed: int, streams: str) -> set[int]:
    feats = {"label": np.zeros(N, np.int64)}
    return set(get_selector("random").select(feats, int(FRACTION * N), seed, streams=streams).indices.tolist())


def _warmup(seed: int, streams: str) -> set[int]:
    gm = get_selector("gradient_match", warmup_fraction=FRACTION)
    return set(gm.warmup(N, 2, np.random.default_rng(stream_seed("gradient_match", seed, streams))).tolist())


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_shared_stream_warmup_is_randoms_subset_and_own_overlaps_at_chance(seed):
    budget = int(FRACTION * N)
    rand = _random_subset(seed, "shared")
    assert _random_subset(seed, "own") == rand  # the baseline is the same in both modes
    assert _warmup(seed, "shared") == rand  # the coupling issue 36 found
    overlap = len(_warmup(seed, "own") & rand)
    chance = budget * budget / N  # 50 rows; hypergeometric sd ~6.9
    assert abs(overlap - chance) < 5 * np.sqrt(chance), overlap


def test_own_streams_differ_by_name_and_seed_and_are_stable():
    a, b = stream_seed("kmeans", 3, "own"), stream_seed("typiclust", 3, "own")
    assert a != b and stream_seed("kmeans", 4, "own") != a
    assert stream_seed("kmeans", 3, "own") == a  # no process-dependent hashing
    assert stream_seed("random", 3, "own") == 3 and stream_seed("kmeans", 3, "shared") == 3
    with pytest.raises(InvalidParameterError, match="streams"):
        stream_seed("kmeans", 3, "mine")
