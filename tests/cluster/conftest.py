"""Fixtures for tests/cluster: one real two-node loopback Ray cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from two_node_ray import FACTS_DRIVER, LocalCluster, dashboard_missing_deps, two_node_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A two-node loopback cluster for one test module, with facts gathered by one driver."""
    with two_node_cluster(dashboard=dashboard_missing_deps() is None) as c:
        c.facts = c.run_driver(FACTS_DRIVER.format(address=c.address))
        yield c
