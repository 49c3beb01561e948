"""A real two-node Ray cluster on loopback, started and torn down by the tests.

Two ``ray start`` processes on this machine, each with its own resources
(``head_slot`` / ``worker_slot``), token auth on with a token the test owns
(never ``~/.ray/auth_token``), a short private ``--temp-dir`` and every
address we pass or target on 127.0.0.1.

Two Ray 2.60 quirks handled here:

* Ray rewrites a loopback address (``--node-ip-address 127.0.0.1``,
  ``--address 127.0.0.1:port``, ``ray.init(address="127.0.0.1:port")``) to
  the machine's routable IP (``services.resolve_ip_for_localhost``) unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; that variable, though, makes a
  *worker* ``ray start`` abort ("multi-node clusters are not supported").
  So the head and every driver get the variable, and the worker runs
  Ray's own CLI entry point with that one rewrite switched off
  (:data:`_WORKER_RAY_CLI`). On a real cluster nodes have routable IPs and
  none of this applies.
* ``ray stop`` is machine-wide (it would kill other people's Ray). Each
  ``ray start`` runs in its own session, so its daemons share one process
  group, and teardown signals exactly those groups.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY_CLI = [str(VENV_BIN / "ray")]
# `ray start` for the worker node: Ray's CLI with the loopback rewrite disabled.
_WORKER_RAY_CLI = [sys.executable, "-c", (
    "import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())")]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def dashboard_missing_deps() -> str | None:
    """Why this install cannot start Ray's dashboard (``ray[default]`` absent), or None."""
    from ray._private.utils import get_dashboard_dependency_error

    err = get_dashboard_dependency_error()
    return None if err is None else str(err)


@dataclass
class LocalCluster:
    """Handles on a running two-node loopback cluster."""

    temp_dir: Path
    port: int
    dashboard_port: int | None
    token: str
    env: dict[str, str]
    pgids: list[int] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """Nodes and task placement, gathered once by :func:`cluster`."""

    @property
    def address(self) -> str:
        """GCS address to pass as ``--address`` / ``ray.address`` / ``RAY_ADDRESS``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def dashboard_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` when the dashboard runs."""
        return None if self.dashboard_port is None else f"http://{LOOPBACK}:{self.dashboard_port}"

    @property
    def node_ids(self) -> set[str]:
        """Ids of the alive nodes."""
        return {n["id"] for n in self.facts["nodes"]}

    def pids(self) -> set[int]:
        """Live processes of this cluster (daemons and Ray workers)."""
        return _our_pids(self.pgids)

    def run_driver(self, code: str, *, env: dict[str, str] | None = None,
                   timeout: float = 120) -> dict[str, Any]:
        """Run ``code`` in a fresh Python driver; it must print one JSON line last."""
        proc = subprocess.run([sys.executable, "-c", code], env=env or self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.temp_dir)
        if proc.returncode != 0:
            raise RuntimeError(f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def cluster_env(temp_dir: Path, token_path: Path) -> dict[str, str]:
    """Environment for every process that starts or joins the test cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({
        "RAY_AUTH_MODE": "token",               # on explicitly: an explicit address never auto-enables it
        "RAY_AUTH_TOKEN_PATH": str(token_path),  # the test's own token, not ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 (see module docstring)
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "TMPDIR": str(temp_dir),
    })
    return env


def _ray_start(cli: list[str], args: list[str], env: dict[str, str], pgids: list[int],
               timeout: float) -> None:
    # New session: the daemons `ray start` leaves behind share its process group.
    proc = subprocess.Popen([*cli, "start", *args, "--disable-usage-stats"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    pgids.append(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"ray start {' '.join(args)} timed out:\n{out[-3000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}")


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) for every process we can read."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _our_pids(pgids: list[int]) -> set[int]:
    """Live members of ``pgids`` and all their descendants.

    Ray's worker processes call ``setsid`` (own group) but stay children of
    their raylet, so they are found through the parent links.
    """
    table = _proc_table()
    ours = {pid for pid, (_, pgid, state) in table.items() if pgid in pgids and state != "Z"}
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _, state) in table.items()
                if ppid in ours and pid not in ours and state != "Z"}
        ours |= kids
        grew = bool(kids)
    return ours


def stop_processes(pgids: list[int], grace: float = 5.0) -> None:
    """SIGTERM our Ray processes, then SIGKILL whatever is alive after ``grace`` s."""
    # Collect once, before killing: a worker whose raylet died is re-parented to init.
    pids = _our_pids(pgids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids |= _our_pids(pgids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = {p for p in pids if _alive(p)}
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def two_node_cluster(*, dashboard: bool, start_timeout: float = 90) -> Iterator[LocalCluster]:
    """Start a head and a worker node on loopback; always tear both down."""
    temp_dir = Path(tempfile.mkdtemp(prefix="dsr-", dir="/tmp"))  # short: unix sockets <= 107 chars
    token_path = temp_dir / "auth_token"
    token = secrets.token_hex(32)
    token_path.write_text(token)
    token_path.chmod(0o600)
    env = cluster_env(temp_dir, token_path)
    dash_port = free_port() if dashboard else None
    cluster = LocalCluster(temp_dir=temp_dir, port=free_port(), dashboard_port=dash_port,
                           token=token, env=env)
    worker_env = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    head = [
        "--head", "--node-ip-address", LOOPBACK, "--port", str(cluster.port),
        "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(temp_dir),
        "--resources", json.dumps({"head_slot": 1}),
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
    ]
    if dashboard:
        head += ["--include-dashboard", "true", "--dashboard-host", LOOPBACK,
                 "--dashboard-port", str(dash_port)]
    else:
        head += ["--include-dashboard", "false"]
    worker = [
        "--address", cluster.address, "--node-ip-address", LOOPBACK, "--num-cpus", "1", "--num-gpus", "0",
        "--resources", json.dumps({"worker_slot": 1}),
        "--dashboard-agent-listen-port", str(free_port()),
    ]
    try:
        _ray_start(RAY_CLI, head, env, cluster.pgids, start_timeout)
        _ray_start(_WORKER_RAY_CLI, worker, worker_env, cluster.pgids, start_timeout)
        yield cluster
    finally:
        stop_processes(cluster.pgids)
        shutil.rmtree(temp_dir, ignore_errors=True)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, local ip, port) of every TCP socket in LISTEN state owned by ``pids``."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                    continue
                hex_ip, hex_port = cols[1].split(":")
                out.append((inodes[cols[9]], _proc_net_ip(hex_ip), int(hex_port, 16)))
    return out


def _proc_net_ip(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 stores four little-endian 32-bit words.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


FACTS_DRIVER = """
import json, ray
ray.init(address={address!r})

@ray.remote(num_cpus=1)
def where():
    import time
    time.sleep(0.2)
    return ray.get_runtime_context().get_node_id()

pinned = ray.get([where.options(resources={{"head_slot": 0.01}}).remote(),
                  where.options(resources={{"worker_slot": 0.01}}).remote()])
spread = ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(2)])
nodes = [{{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "resources": n["Resources"]}}
         for n in ray.nodes() if n["Alive"]]
print(json.dumps({{"nodes": nodes, "pinned": pinned, "spread": spread}}))
"""
