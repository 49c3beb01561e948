"""Static checks of cluster/: launcher YAML, KubeRay manifests, Dockerfile.

The launcher YAML is validated with the JSON schema shipped inside the
installed Ray (``ray/autoscaler/ray-schema.json``) and with Ray's own
``prepare_config`` + ``validate_config`` (what ``ray up`` runs before it
touches a cloud); KubeRay manifests against the fields the ray.io/v1 CRDs
require. No cloud or Kubernetes API is contacted.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws.yaml"
KUBERAY = CLUSTER / "kuberay"
SHARED_MOUNTS = {"/app/runs", "/shared/data", "/mnt/hf-cache"}
SWEEP = "python -m dataselect.sweep experiments/grid.yaml"


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _pinned_ray() -> str:
    """The ``ray==X.Y.*`` pin of pyproject.toml, as ``X.Y``."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.match(r"ray(?:\[[^\]]*\])?==(\d+\.\d+)\.\*$", d.replace(" ", "")))]
    assert len(pins) == 1, f"expected one ray==X.Y.* pin in pyproject, got {deps}"
    return pins[0]


def _image_ray_version(image: str) -> str:
    """``2.60.0`` from ``rayproject/ray:2.60.0-py311-gpu`` or ``…/dataselect:0.1.0-ray2.60.0-gpu``."""
    m = re.search(r"(?:ray:|-ray)(\d+\.\d+\.\d+)", image)
    assert m, f"image {image!r} does not name its Ray version"
    return m.group(1)


# --------------------------------------------------------------------------- launcher
@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    docs = _load_all(LAUNCHER)
    assert len(docs) == 1
    return docs[0]


def test_launcher_validates_against_rays_schema(launcher: dict[str, Any]) -> None:
    import jsonschema
    import ray

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    assert schema_path.is_file(), f"no launcher schema in the installed ray at {schema_path}"
    jsonschema.validate(launcher, json.loads(schema_path.read_text()))


def test_launcher_passes_ray_up_validation(launcher: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    filled = prepare_config(launcher)  # merges provider defaults, as `ray up` does
    validate_config(filled)
    assert filled["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1


def test_launcher_required_fields(launcher: dict[str, Any]) -> None:
    assert launcher["cluster_name"] == "dataselect"
    assert launcher["provider"]["type"] == "aws" and launcher["provider"]["region"]
    types = launcher["available_node_types"]
    head = launcher["head_node_type"]
    assert head in types
    for name, spec in types.items():
        assert isinstance(spec["resources"], dict), f"{name}: resources"
        assert spec["node_config"]["InstanceType"], f"{name}: node_config.InstanceType"
    assert types[head]["resources"].get("GPU", 0) == 0, "the head is a CPU node"
    gpu = [n for n, s in types.items() if n != head and s["resources"].get("GPU", 0) >= 1]
    assert gpu, "no GPU worker type"
    for n in gpu:
        lo, hi = types[n]["min_workers"], types[n]["max_workers"]
        assert 0 <= lo <= hi <= launcher["max_workers"], f"{n}: autoscaling bounds {lo}..{hi}"
        assert hi > lo, f"{n}: min == max leaves nothing to autoscale"
    assert isinstance(launcher["setup_commands"], list)


def test_launcher_docker_image_and_shared_storage(launcher: dict[str, Any]) -> None:
    docker = launcher["docker"]
    assert _image_ray_version(docker["image"]).startswith(_pinned_ray() + ".")
    opts = " ".join(docker["run_options"])
    mounts = dict(re.findall(r"-v (\S+):(\S+)", opts))
    assert set(mounts.values()) >= SHARED_MOUNTS, f"shared mounts {mounts}"
    assert all(src.startswith("/mnt/efs/") for src in mounts), "shared mounts must come from EFS, not local disk"
    assert any("mount -t nfs4" in c for c in launcher["initialization_commands"])


def test_launcher_token_auth_and_loopback_dashboard(launcher: dict[str, Any]) -> None:
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]
    assert "~/.ray/auth_token" in launcher["file_mounts"]
    head = " ".join(launcher["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in yaml.safe_dump(launcher)
    assert "RAY_AUTH_MODE=token ray start --address" in " ".join(launcher["worker_start_ray_commands"])


# --------------------------------------------------------------------------- KubeRay
def _kuberay_docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for d in _load_all(path):
            docs[f"{d['kind']}/{d['metadata']['name']}"] = d
    return docs


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for key, d in _kuberay_docs().items():
        if d["kind"] == "RayCluster":
            out.append((key, d["spec"]))
        elif d["kind"] == "RayJob":
            out.append((key, d["spec"]["rayClusterSpec"]))
    return out


CLUSTER_SPECS = _cluster_specs()


def test_kuberay_kinds_and_api_version() -> None:
    docs = _kuberay_docs()
    kinds = {d["kind"] for d in docs.values()}
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim"} <= kinds
    for key, d in docs.items():
        if d["kind"] in ("RayCluster", "RayJob"):
            assert d["apiVersion"] == "ray.io/v1", key


def test_rayjob_runs_the_sweep() -> None:
    jobs = [d for d in _kuberay_docs().values() if d["kind"] == "RayJob"]
    assert len(jobs) == 1
    spec = jobs[0]["spec"]
    cmd = spec["entrypoint"]
    assert SWEEP in cmd, cmd
    # `cd /app` first: experiments/ ships in the image and output_dir "runs" is /app/runs.
    assert shlex.split(cmd)[:2] == ["cd", "/app"]
    assert spec["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize(("key", "spec"), CLUSTER_SPECS, ids=[k for k, _ in CLUSTER_SPECS])
def test_kuberay_cluster_spec(key: str, spec: dict[str, Any]) -> None:
    pin = _pinned_ray()
    assert spec["rayVersion"].startswith(pin + "."), f"{key}: rayVersion {spec['rayVersion']} vs ray=={pin}.*"
    assert spec["authOptions"]["mode"] == "token", f"{key}: token auth must be on"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{key}: head service must stay in-cluster"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams values are strings"
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["groupName"]
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
        assert g["maxReplicas"] > g["minReplicas"], f"{g['groupName']}: nothing to autoscale"
        assert isinstance(g["rayStartParams"], dict)
    gpu_groups = [g for g in groups if _container(g)["resources"]["limits"].get("nvidia.com/gpu")]
    assert gpu_groups, f"{key}: no worker group requests nvidia.com/gpu"
    for g in gpu_groups:
        res = _container(g)["resources"]
        assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"]
    assert "nvidia.com/gpu" not in _container(head)["resources"]["limits"], "the head is a CPU pod"
    images = {_container(p)["image"] for p in (head, *groups)}
    assert len(images) == 1, f"{key}: head and workers must run one image, got {images}"
    assert _image_ray_version(images.pop()).startswith(pin + ".")


@pytest.mark.parametrize(("key", "spec"), CLUSTER_SPECS, ids=[k for k, _ in CLUSTER_SPECS])
def test_kuberay_shared_storage_same_path_everywhere(key: str, spec: dict[str, Any]) -> None:
    claims = {d["metadata"]["name"] for d in _kuberay_docs().values() if d["kind"] == "PersistentVolumeClaim"}
    pvcs = {d["metadata"]["name"]: d for d in _kuberay_docs().values() if d["kind"] == "PersistentVolumeClaim"}
    layouts = []
    for group in (spec["headGroupSpec"], *spec["workerGroupSpecs"]):
        pod = group["template"]["spec"]
        vols = {v["name"]: v for v in pod["volumes"]}
        mounts = {}
        for m in _container(group)["volumeMounts"]:
            vol = vols[m["name"]]
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"{key}: PVC {claim} not defined in cluster/kuberay"
                mounts[m["mountPath"]] = (claim, m.get("subPath", ""))
        layouts.append(mounts)
    assert set(layouts[0]) >= SHARED_MOUNTS, f"{key}: head mounts {sorted(layouts[0])}"
    assert all(lay == layouts[0] for lay in layouts), f"{key}: head and workers mount shared storage differently"
    for claim, _ in layouts[0].values():
        assert "ReadWriteMany" in pvcs[claim]["spec"]["accessModes"], f"{claim}: every pod mounts it"


def test_raycluster_dashboard_on_loopback() -> None:
    clusters = [d for d in _kuberay_docs().values() if d["kind"] == "RayCluster"]
    assert clusters
    for d in clusters:
        assert d["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"


def _container(group: dict[str, Any]) -> dict[str, Any]:
    containers = group["template"]["spec"]["containers"]
    ray_c = [c for c in containers if c["name"].startswith("ray-")]
    assert len(ray_c) == 1, [c["name"] for c in containers]
    return ray_c[0]


# --------------------------------------------------------------------------- image
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (CLUSTER / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_base_matches_ray_pin() -> None:
    ins = _dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in ins if op == "ARG" and "=" in a)
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) == 1
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], froms[0])
    assert base.startswith("rayproject/ray:"), base
    assert _image_ray_version(base).startswith(_pinned_ray() + "."), base
    import ray

    assert ray.__version__.startswith(_pinned_ray() + "."), "installed ray differs from the pin"


def test_dockerfile_installs_torch_then_this_package() -> None:
    runs = [a for op, a in _dockerfile_instructions() if op == "RUN"]
    pip = [r for r in runs if "pip install" in r]
    torch_i = next(i for i, r in enumerate(pip) if re.search(r"""["']?torch==\$\{TORCH_VERSION\}""", r))
    pkg_i = next(i for i, r in enumerate(pip) if re.search(r"pip install (--no-cache-dir )?\.(\s|$)", r))
    assert torch_i < pkg_i, "torch first (CPU/CUDA choice), then the package"
    copies = [a for op, a in _dockerfile_instructions() if op == "COPY"]
    copied = " ".join(copies)
    for needed in ("pyproject.toml", "dataselect", "experiments"):
        assert needed in copied, f"Dockerfile does not COPY {needed}"
    ins = _dockerfile_instructions()
    assert ("WORKDIR", "/app") in ins
    env = " ".join(a for op, a in ins if op == "ENV")
    assert "RAY_AUTH_MODE=token" in env
