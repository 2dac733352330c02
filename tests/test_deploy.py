"""deploy/ is checked as far as this machine can: Dockerfiles lint clean, YAML lints,
Kubernetes manifests (base and rendered overlays) validate against the API schemas, the
compose file holds together, and every clipsearch command in them parses with the CLI."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from clipsearch.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*"))
K8S_VERSION = "1.33.0"


def tool(name: str) -> str:
    """A command-line tool of the dev extra: beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: it comes with the dev extra"
    return found


def test_dockerfiles_pass_hadolint() -> None:
    assert DOCKERFILES
    result = subprocess.run(
        [tool("hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_passes_yamllint() -> None:
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(DEPLOY)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes ---------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(folder: Path) -> list[dict[str, Any]]:
    """A kustomization's resources with its JSON 6902 patches applied (the only kind of
    patch deploy/ uses, so this is exactly what kustomize produces, labels aside)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = folder / entry
        resources += render(target) if target.is_dir() else _documents(target)
    resources = copy.deepcopy(resources)
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load(patch["patch"] if "patch" in patch else
                                    (folder / patch["path"]).read_text())  # fmt: skip
        matches = [
            r for r in resources
            if r["kind"] == patch["target"]["kind"]
            and r["metadata"]["name"] == patch["target"]["name"]
        ]  # fmt: skip
        assert len(matches) == 1, f"{folder}: patch target {patch['target']} matches {len(matches)}"
        patched = jsonpatch.apply_patch(matches[0], operations)
        resources[resources.index(matches[0])] = patched
    return resources


KUSTOMIZATIONS = sorted(p.parent for p in (DEPLOY / "k8s").rglob("kustomization.yaml"))


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_kustomizations_render_to_valid_kubernetes_resources(folder: Path) -> None:
    resources = render(folder)
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "Service", "Job", "CronJob", "PersistentVolumeClaim"} <= kinds
    for resource in resources:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_gpu_overlay_puts_the_server_and_jobs_on_gpus() -> None:
    overlay = render(DEPLOY / "k8s" / "overlays" / "gpu")
    rendered = {(r["kind"], r["metadata"]["name"]): r for r in overlay}
    server = rendered["Deployment", "clipsearch-server"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["image"] == "clipsearch:gpu"
    cron = rendered["CronJob", "clipsearch-rebuild"]["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]
    assert all(c["image"] == "clipsearch:gpu" for c in cron["initContainers"] + cron["containers"])


def test_server_probes_are_native_grpc_on_the_health_port() -> None:
    deployment = next(r for r in render(DEPLOY / "k8s" / "base") if r["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    health_port = int(args[args.index("--health-port") + 1])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == health_port
    assert container["readinessProbe"]["grpc"].get("service", "") == ""
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    grace = float(args[args.index("--grace") + 1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + 5


def test_rayjob_is_a_kuberay_rayjob_with_gpu_encoders() -> None:
    (job,) = _documents(DEPLOY / "k8s" / "ray" / "rayjob-embed-build.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups]
    assert any("nvidia.com/gpu" in limit for limit in limits)
    assert "--engine ray" in job["spec"]["entrypoint"]


# --- compose ------------------------------------------------------------------------------


def test_compose_file_holds_together() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"embed", "build", "server", "prometheus"} <= set(services)
    declared_volumes = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    assert (DEPLOY / "compose" / "prometheus.yml").exists()
    gpu = yaml.safe_load((DEPLOY / "compose" / "compose.gpu.yaml").read_text())
    assert set(gpu["services"]) <= set(services)


# --- every clipsearch command in deploy/ is a real one -----------------------------------


def _dockerfile_commands(path: Path) -> Iterator[list[str]]:
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction in ("CMD", "ENTRYPOINT") or (instruction == "HEALTHCHECK" and "CMD" in rest):
            array = rest[rest.index("[") :]
            argv = json.loads(array)
            if instruction == "CMD" and argv[0] != "clipsearch":
                argv = ["clipsearch", *argv]  # the ENTRYPOINT is clipsearch
            if argv != ["clipsearch"]:
                yield argv
        elif instruction == "RUN":
            yield from _shell_commands(rest)


def _shell_commands(script: str) -> Iterator[list[str]]:
    for part in re.split(r"&&|;|\bthen\b|\bfi\b", script):
        words = shlex.split(part)
        if len(words) > 1 and (words[0] == "clipsearch" or words[0].endswith("/bin/clipsearch")):
            yield ["clipsearch", *words[1:]]


def _manifest_commands() -> Iterator[list[str]]:
    for path in (DEPLOY / "k8s").rglob("*.yaml"):
        for doc in _documents(path):
            yield from _container_commands(doc)
            if isinstance(doc, dict) and doc.get("kind") == "RayJob":
                yield from _shell_commands(doc["spec"]["entrypoint"])


def _container_commands(node: object) -> Iterator[list[str]]:
    if isinstance(node, dict):
        if str(node.get("image", "")).startswith("clipsearch:") and "args" in node:
            yield ["clipsearch", *map(str, node["args"])]
        for value in node.values():
            yield from _container_commands(value)
    elif isinstance(node, list):
        for value in node:
            yield from _container_commands(value)


def _compose_commands() -> Iterator[list[str]]:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    for service in compose["services"].values():
        if "command" in service and "clipsearch" in str(service.get("image", "")):
            yield ["clipsearch", *service["command"]]


COMMANDS = [
    *(argv for path in DOCKERFILES for argv in _dockerfile_commands(path)),
    *_manifest_commands(),
    *_compose_commands(),
]


def test_deploy_uses_clipsearch_commands() -> None:
    subcommands = {argv[1] for argv in COMMANDS}
    assert {"serve", "embed", "build", "health", "models"} <= subcommands


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv)[:60])
def test_every_deploy_command_parses_with_the_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"not a valid clipsearch command: {' '.join(argv)}\n{capsys.readouterr().err}")
    with pytest.raises(SystemExit) as done:
        main([argv[1], "--help"])
    assert done.value.code == 0
