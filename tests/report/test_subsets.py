"""The target distance in the report: a domain classifier's AUC, and its projected space."""

from __future__ import annotations

import numpy as np
import pytest

from dataselect.report.subsets import TargetSpace, domain_auc


def _space(rng: np.random.Generator, dims: int = 384) -> TargetSpace:
    # Pool: two populations along a few directions; the target is population B only.
    n = 3000
    shift = np.zeros(dims)
    shift[:8] = 0.6
    pool = rng.normal(size=(n, dims))
    pool[n // 2:] += shift
    target = rng.normal(size=(1000, dims)) + shift
    return TargetSpace(np.arange(n, dtype=np.int64), pool, target, np.full(1000, 10.0), target[:500] + 0.0)


def test_domain_auc_is_half_for_the_same_distribution_and_near_one_when_apart():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    assert domain_auc(a, b) == pytest.approx(0.5, abs=0.05)
    assert domain_auc(a, b + 3.0) > 0.99
    assert np.isnan(domain_auc(a[:1], b))  # one row: no fold can hold it out


def test_projected_space_keeps_the_order_of_subsets_by_distance_to_the_target():
    space = _space(np.random.default_rng(1))
    small = space.projected(64)
    assert small.pool_embedding.shape == (3000, 64) and small.target_embedding.shape == (1000, 64)
    from_a, from_b, mixed = np.arange(0, 300), np.arange(1500, 1800), np.r_[0:150, 1500:1650]
    for s in (space, small):
        a, b, m = (s.auc(ids)[0] for ids in (from_a, from_b, mixed))
        assert b < m < a  # the subset drawn from the target's population is closest
        assert b == pytest.approx(0.5, abs=0.07)
    assert space.projected(400) is space  # nothing to reduce
