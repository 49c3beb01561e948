"""One place that starts or joins Ray, so every stage sees the same cluster.

Local runs call ``ray.init()`` with the configured CPU count and temp dir;
``ray.address`` (or ``RAY_ADDRESS``) joins an existing cluster instead.
Ray's token authentication stays on (Ray >= 2.5x enables it for new local
clusters and writes a token under ``~/.ray``): the dashboard binds to
127.0.0.1 and asks for that token, which ``ray get-auth-token`` prints.
Set ``RAY_AUTH_MODE=disabled`` only on a machine nobody else can reach.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dataselect.core.config import RayConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig | None = None, *, address: str | None = None,
             log_to_driver: bool = True) -> dict[str, Any]:
    """Start or join Ray once per process; returns the cluster's resources.

    ``address`` (CLI ``--address``) beats ``cfg.address`` beats ``RAY_ADDRESS``.
    A second call is a no-op, so library code can call it defensively.
    ``log_to_driver=False`` leaves worker output in the session's log files
    (the sweep links them as ``<study>/logs/ray``) instead of the console.
    """
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        return ray.cluster_resources()
    addr = address or cfg.address or os.environ.get("RAY_ADDRESS")
    # Workers must import this package's modules from the driver's tree.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": log_to_driver}
    if addr:
        # Ray turns token auth on by itself only for local clusters and
        # address="auto"; a driver joining a token-auth cluster by explicit
        # address must say so, or the cluster refuses it.
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            os.environ["RAY_AUTH_MODE"] = "token"
        ray.init(address=addr, **kwargs)
    else:
        kwargs["include_dashboard"] = cfg.include_dashboard
        if cfg.num_cpus is not None:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.temp_dir is not None:
            temp = os.path.abspath(cfg.temp_dir)
            os.makedirs(temp, exist_ok=True)
            kwargs["_temp_dir"] = temp
        ray.init(**kwargs)
    res = ray.cluster_resources()
    log.info("ray: %s", {k: v for k, v in res.items() if k in ("CPU", "GPU", "memory")})
    return res


def _token_available() -> bool:
    return bool(
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    )
