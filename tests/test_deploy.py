"""The deployment recipe (deploy/) agrees with the code it deploys.

There is no container engine or cluster here, so the files are read, not run: the Containerfile
line by line, the compose file and the Kubernetes manifests as YAML. Every setting they give is
checked against `avengers serve` itself (its environment variables parsed by the real command,
its ports, its drain timeout) and every probe path against the server's routes. haproxy checks
its own configuration (`haproxy -c`), kubectl renders the manifests offline (`kubectl kustomize`)
and kubernetes-validate checks them against the Kubernetes API schemas; `kubectl apply
--dry-run=client` needs an API server for its type discovery and runs when one answers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


# --- what the code offers ---------------------------------------------------------------------


def serve_command() -> Any:
    from avengers.cli import app

    return typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]


def serve_envvars() -> set[str]:
    """Environment variables `avengers serve` reads as its options."""
    names: set[str] = set()
    for p in serve_command().params:
        env = p.envvar
        names.update([env] if isinstance(env, str) else env or [])
    return names


def names_read_by_code() -> set[str]:
    """Every AVENGERS_* name the package mentions (the server's factory reads more than the CLI)."""
    text = "\n".join(p.read_text() for p in (ROOT / "shared" / "avengers").rglob("*.py"))
    return set(re.findall(r"\bAVENGERS_[A-Z0-9_]+\b", text))


# Names that are not the project's own but that the recipe sets on purpose.
FOREIGN_ENV = {"PATH", "PYTHONUNBUFFERED", "HF_HUB_OFFLINE", "MODELS_API_KEY"}


def serve_params_from_env(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Parse `avengers serve` with no arguments in ``env``, as a container starts it: the real
    command turns each variable into its option (a value of the wrong type fails here)."""
    env = dict(env)
    endpoints = tmp_path / "endpoints.yaml"  # click checks nothing about the path; keep it real
    endpoints.write_text((DEPLOY / "endpoints.example.yaml").read_text())
    env["AVENGERS_ENDPOINTS"] = str(endpoints)
    saved = {k: v for k, v in os.environ.items() if k.startswith("AVENGERS_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k.startswith("AVENGERS_")})
    try:
        ctx = serve_command().make_context("serve", [])
        return dict(ctx.params)
    finally:
        for k in [k for k in os.environ if k.startswith("AVENGERS_")]:
            del os.environ[k]
        os.environ.update(saved)


def default_of(name: str) -> Any:
    (param,) = [p for p in serve_command().params if p.name == name]
    return param.default


@pytest.fixture(scope="module")
def routes(toy_router: Any) -> set[str]:
    from avengers import Answerer, Endpoint
    from avengers.server import create_app

    eps = {m: Endpoint(m, "http://127.0.0.1:9/v1") for m in toy_router.models_}
    app = create_app(Answerer(toy_router, eps))
    return {r.path for r in app.routes}  # type: ignore[attr-defined]


def serve_help() -> str:
    from avengers.cli import app
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    return out


def test_serve_reads_its_whole_configuration_from_the_environment(tmp_path: Path) -> None:
    """What the recipe needs is there: every setting a container gives has an AVENGERS_ name,
    and `--help` shows the names."""
    needed = {"AVENGERS_ENDPOINTS", "AVENGERS_ROUTER", "AVENGERS_HOST", "AVENGERS_PORT",
              "AVENGERS_WORKERS", "AVENGERS_FEEDBACK_STORE", "AVENGERS_CONVERSATIONS",
              "AVENGERS_DRAIN_TIMEOUT", "AVENGERS_SERVER_KEY_FILE"}  # fmt: skip
    assert needed <= serve_envvars()
    text = serve_help()
    for name in needed:
        assert name in text
    params = serve_params_from_env(
        {"AVENGERS_PORT": "9123", "AVENGERS_HOST": "0.0.0.0", "AVENGERS_DRAIN_TIMEOUT": "12.5",
         "AVENGERS_FEEDBACK_STORE": "redis://r:6379/0"}, tmp_path
    )  # fmt: skip
    assert params["port"] == 9123 and params["host"] == "0.0.0.0"
    assert params["drain_timeout"] == 12.5
    assert params["feedback_store"] == "redis://r:6379/0"


def test_a_bad_drain_timeout_is_one_clear_line(tmp_path: Path) -> None:
    from avengers.cli import app
    from typer.testing import CliRunner

    eps = tmp_path / "e.yaml"
    eps.write_text((DEPLOY / "endpoints.example.yaml").read_text())
    r = CliRunner().invoke(app, ["serve", "-e", str(eps), "--drain-timeout", "0"])
    assert r.exit_code == 2
    assert "--drain-timeout must be > 0" in r.output


# --- Containerfile ----------------------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    lines, current = [], ""
    for raw in (DEPLOY / "Containerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    out: list[tuple[str, str]] = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out = []  # only the final stage runs
        out.append((word.upper(), rest.strip()))
    return out


def container_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_containerfile_runs_serve_unprivileged_with_health_and_drain(
    tmp_path: Path, routes: set[str]
) -> None:
    from avengers.cli.serving import DRAIN_TIMEOUT

    ins = containerfile()
    words = [w for w, _ in ins]
    for needed in ("USER", "ENV", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK", "ENTRYPOINT"):
        assert needed in words, f"the final stage lacks {needed}"
    user = dict(ins)["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0, "USER must be a numeric, non-root id"
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["avengers", "serve"]
    assert dict(ins)["STOPSIGNAL"] == "SIGTERM"

    env = container_env(ins)
    unknown = set(env) - serve_envvars() - names_read_by_code() - FOREIGN_ENV
    assert not unknown, f"the image sets variables nothing reads: {unknown}"
    params = serve_params_from_env(env, tmp_path)
    assert params["host"] == "0.0.0.0"
    assert params["drain_timeout"] == DRAIN_TIMEOUT
    assert dict(ins)["EXPOSE"].split("/")[0] == str(params["port"])
    assert env["HF_HUB_OFFLINE"] == "1"

    check = dict(ins)["HEALTHCHECK"]
    path = re.search(r"127\.0\.0\.1:%s(/\w+)", check)
    assert path and path.group(1) == "/health" and "/health" in routes
    assert "AVENGERS_PORT" in check  # probes the port the server listens on


def test_containerfile_health_check_command_is_valid_python() -> None:
    check = dict(containerfile())["HEALTHCHECK"]
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")


# --- compose ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_three_replicas_on_redis_behind_haproxy(tmp_path: Path) -> None:
    from avengers.cli.serving import DRAIN_TIMEOUT

    services = compose()["services"]
    replicas = sorted(n for n in services if n.startswith("avengers-"))
    assert len(replicas) == 3 and {"redis", "lb"} <= set(services)
    for name in replicas:
        svc = services[name]
        context = (DEPLOY / svc["build"]["context"]).resolve()
        assert context == ROOT and (context / svc["build"]["dockerfile"]).is_file()
        env = {k: str(v) for k, v in svc["environment"].items()}
        unknown = set(env) - serve_envvars() - names_read_by_code() - FOREIGN_ENV
        assert not unknown, unknown
        env["AVENGERS_SERVER_KEYS"] = "k"  # compose substitutes it from the operator's shell
        params = serve_params_from_env(env, tmp_path)
        assert params["host"] == "0.0.0.0"
        store = params["feedback_store"]
        assert store.startswith("redis://redis:") and params["conversations"] == "store"
        assert int(store.split(":")[2].split("/")[0]) == 6379
        grace = svc["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) > params["drain_timeout"] >= DRAIN_TIMEOUT
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts[env["AVENGERS_ENDPOINTS"]] == "./endpoints.yaml"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        lb_env = services["lb"]["environment"]
        n = name.rsplit("-", 1)[1]
        assert lb_env[f"AVENGERS_REPLICA_{n}"] == f"{name}:{params['port']}"
    lb = services["lb"]
    (cfg,) = [v for v in lb["volumes"] if v.startswith("./haproxy.cfg:")]
    assert (DEPLOY / "haproxy.cfg").is_file() and cfg.endswith("haproxy.cfg:ro")
    assert lb["ports"][0].split(":")[-1] == lb["environment"]["AVENGERS_LB_BIND"].split(":")[-1]


# --- haproxy ----------------------------------------------------------------------------------


def test_haproxy_checks_readiness_on_a_real_route(routes: set[str]) -> None:
    text = (DEPLOY / "haproxy.cfg").read_text()
    (path,) = re.findall(r"option httpchk GET (\S+)", text)
    assert path == "/ready" and path in routes
    assert len(re.findall(r"^\s*server replica\d", text, flags=re.M)) == 3
    assert "retry-on conn-failure empty-response" in text  # never a started request twice


def test_haproxy_accepts_its_configuration() -> None:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("haproxy not installed (.ci/run installs it from Debian)")
    env = {**os.environ, "AVENGERS_LB_BIND": "127.0.0.1:18000",
           **{f"AVENGERS_REPLICA_{i}": f"127.0.0.1:{18000 + i}" for i in (1, 2, 3)}}  # fmt: skip
    r = subprocess.run(
        [binary, "-c", "-f", str(DEPLOY / "haproxy.cfg")], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration file is valid" in r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr


# --- Kubernetes -------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_manifests_hold_every_part() -> None:
    kinds = sorted(d["kind"] for d in manifests())
    for kind in ("Deployment", "Service", "StatefulSet", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "ConfigMap"):  # fmt: skip
        assert kind in kinds
    for d in manifests():
        assert d["apiVersion"] and d["metadata"]["name"]


def test_deployment_agrees_with_the_cli_and_the_server(tmp_path: Path, routes: set[str]) -> None:
    from avengers import load_endpoints
    from avengers.training.bundled import load_pretrained

    dep = one("Deployment", "avengers")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # configuration: the ConfigMap's names are read by the code and parse as serve's options
    (config_ref,) = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    env = one("ConfigMap", config_ref)["data"]
    unknown = set(env) - serve_envvars() - names_read_by_code() - FOREIGN_ENV
    assert not unknown, unknown
    params = serve_params_from_env(env, tmp_path)
    assert params["host"] == "0.0.0.0" and params["conversations"] == "store"
    redis_service = one("Service", "avengers-redis")
    assert params["feedback_store"] == (
        f"redis://{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}/0"
    )

    # the endpoint file is mounted where AVENGERS_ENDPOINTS points and loads; its names are models
    # of the router the image serves
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    folder, file = env["AVENGERS_ENDPOINTS"].rsplit("/", 1)
    (vol,) = [n for n, p in mounts.items() if p == folder]
    eps_map = one("ConfigMap", volumes[vol]["configMap"]["name"])["data"]
    (tmp_path / file).write_text(eps_map[file])
    eps = load_endpoints(tmp_path / file)
    assert env["AVENGERS_ROUTER"] == "pretrained"
    assert set(eps) <= set(load_pretrained().models_)
    assert eps_map[file] == (DEPLOY / "endpoints.example.yaml").read_text().split("\n", 2)[2]

    # ports and probes
    (port,) = container["ports"]
    assert port["containerPort"] == params["port"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in (port["name"], port["containerPort"])
        assert get["path"] in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"

    # drain: the pod is killed only after preStop's sleep and serve's drain
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(sleep[1]) + params["drain_timeout"]

    # non-root, as the image's USER
    user = dict(containerfile())["USER"].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    # the Service, autoscaler and disruption budget point at this Deployment
    svc = one("Service", "avengers")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "avengers"
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_redis_keeps_acknowledged_ratings_on_a_volume() -> None:
    sts = one("StatefulSet", "avengers-redis")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert "--appendonly" in c["args"] and c["args"][c["args"].index("--appendonly") + 1] == "yes"
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/data"]
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == c["volumeMounts"][0]["name"]
    )
    svc = one("Service", "avengers-redis")
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_kubectl_renders_the_manifests_offline(tmp_path: Path) -> None:
    """kubectl's own reader: every document decodes as a Kubernetes object with a unique
    identity (kustomize refuses duplicates and malformed objects); no cluster is needed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    for path in K8S.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    names = sorted(p.name for p in K8S.glob("*.yaml"))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": names}))
    r = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in manifests()
    )


def test_manifests_match_the_kubernetes_api_schemas() -> None:
    """Every field is one the Kubernetes API knows, with the right type (strict: an unknown or
    misspelt field fails), for the API version kubectl here speaks."""
    kv = pytest.importorskip("kubernetes_validate")
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kv.validate(doc, "1.32", strict=True)


def test_kubectl_apply_dry_run(tmp_path: Path) -> None:
    """kubectl's client-side dry run: it needs an API server for type discovery (even with
    --validate=false), so it runs only where one answers."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    probe = subprocess.run([kubectl, "version", "--request-timeout=3s"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no Kubernetes API server answers: client dry run needs its discovery")
    r = subprocess.run(
        [kubectl, "apply", "--dry-run=client", "-f", str(K8S)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(dry run)") == len(manifests())


# --- the walkthrough --------------------------------------------------------------------------


def test_deploy_doc_names_only_real_files_flags_and_variables() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    made = set(re.findall(r"^cp \S+ (\S+)", doc, flags=re.M))  # the operator's own copies
    for path in set(re.findall(r"\bdeploy/[\w./-]+[\w]", doc)) - made:
        assert (ROOT / path).exists(), path
    names = set(re.findall(r"\bAVENGERS_[A-Z0-9_]+\b", doc))
    # haproxy.cfg's own names
    lb_names = {"AVENGERS_LB_BIND"} | {f"AVENGERS_REPLICA_{i}" for i in (1, 2, 3)}
    assert not names - serve_envvars() - names_read_by_code() - lb_names
    flags = set(re.findall(r"--[a-z][a-z-]+", serve_help()))
    for line in re.findall(r"avengers serve[^\n`]*", doc):
        for flag in re.findall(r"\s(--[a-z][a-z-]+)", line):
            assert flag in flags, f"docs/deploy.md: avengers serve has no {flag}"
