"""The ``Dockerfile``, ``.dockerignore`` and ``docs/deploy.md``'s manifests, checked without Docker
or a cluster: the instructions the image needs, arguments the real ``serve`` parser accepts,
manifests that agree with each other, and a metrics table that is the app's own list."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rlm_async import RLM
from rlm_async.server import create_app
from rlm_async.testing import ScriptedModel
from tests.server.test_serve_flags import app_options, parse

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (keyword, arguments): continuations joined, comments
    and blank lines dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text())


def only(keyword: str) -> str:
    args = [rest for key, rest in DOCKERFILE if key == keyword]
    assert len(args) == 1, f"expected one {keyword}, found {args}"
    return args[0]


def test_the_image_runs_serve_as_a_user_that_is_not_root() -> None:
    assert DOCKERFILE[0] == ("FROM", "python:3.11-slim")
    users = [rest for key, rest in DOCKERFILE if key == "USER"]
    assert users, "no USER: the server would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    assert [key for key, _ in DOCKERFILE].index("USER") < [key for key, _ in DOCKERFILE].index(
        "ENTRYPOINT"
    )
    runs = " ".join(rest for key, rest in DOCKERFILE if key == "RUN")
    assert "bubblewrap" in runs and "libseccomp2" in runs
    assert 'pip install ".[server]"' in runs
    assert f"--uid {uid}" in runs
    assert json.loads(only("ENTRYPOINT")) == ["rlm-async", "serve"]  # exec form: gets SIGTERM
    assert only("STOPSIGNAL") == "SIGTERM"


def test_the_images_default_arguments_are_ones_serve_accepts() -> None:
    args = parse(*json.loads(only("CMD")))
    assert (args.host, args.workers) == ("0.0.0.0", 1)
    assert args.drain_delay > 0 and args.drain_timeout > args.drain_delay
    healthcheck = only("HEALTHCHECK")
    assert f"http://127.0.0.1:{args.port}/livez" in healthcheck
    assert str(args.port) == only("EXPOSE")


def test_what_the_image_copies_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".nox", ".venv", ".env"} <= ignored
    for key, rest in DOCKERFILE:
        if key == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored and source.rstrip("/") not in ignored, source


def manifests() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOY, flags=re.DOTALL)
    assert blocks, "docs/deploy.md has no yaml block"
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc is not None]


def kind(name: str) -> dict[str, Any]:
    found = [doc for doc in manifests() if doc.get("kind") == name]
    assert len(found) == 1, f"expected one {name} in docs/deploy.md"
    return found[0]


def test_the_deployment_probes_drains_and_runs_serve_with_arguments_it_accepts() -> None:
    deployment = kind("Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    args = parse(*container["args"])
    assert (args.host, args.workers) == ("0.0.0.0", 1)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == args.port
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    # SIGKILL must not come before the drain's end.
    assert pod["spec"]["terminationGracePeriodSeconds"] > args.drain_delay + args.drain_timeout
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == only("USER").split(":")[0]
    # The token comes from the Secret the pod's environment is made from.
    secret = kind("Secret")
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert args.api_key_env in secret["stringData"]


def test_the_service_and_autoscaler_point_at_the_deployment_and_a_metric_the_app_exports() -> None:
    deployment, service, hpa = kind("Deployment"), kind("Service"), kind("HorizontalPodAutoscaler")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    assert name == "rlm_runs_in_flight" and name in exported_metrics()
    assert metric["pods"]["target"]["type"] == "AverageValue"
    args = parse(*deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert 0 < float(metric["pods"]["target"]["averageValue"]) <= args.max_concurrent_runs

    # prometheus-adapter's rule serves that name from the gauge's series.
    (adapter,) = [doc for doc in manifests() if "rules" in doc]
    (rule,) = adapter["rules"]
    assert rule["seriesQuery"].startswith(f"{name}{{")
    assert rule["name"]["as"] == name
    monitor = kind("PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert endpoint["authorization"]["credentials"]["key"] == args.api_key_env


def exported_metrics() -> set[str]:
    """The sample names a fresh app's ``/metrics`` declares (counters with ``_total``)."""
    app = create_app(lambda: RLM(model=ScriptedModel([])))
    text = app.state.rlm_service.metrics.exposition().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):  # the client's creation times of histograms
            continue
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_the_metrics_table_lists_what_the_app_exports() -> None:
    table = set(re.findall(r"^\| `(rlm_[a-z_]+)` \|", DEPLOY, flags=re.MULTILINE))
    # repls_alive is read from /proc: present on Linux, where these tests run.
    assert table == exported_metrics()


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_drain_delay_is_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit):
        parse("--drain-delay", value)


def test_metrics_need_the_token_unless_the_flag_says_otherwise() -> None:
    assert parse().drain_delay == 0
    assert app_options()["metrics_auth"] is True
    assert app_options("--metrics-no-auth")["metrics_auth"] is False
