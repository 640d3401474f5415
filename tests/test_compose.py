"""The compose stack, checked without Docker: the YAML is parsed and held to the security
rules, every mounted path exists, every image is pinned, and the configs it mounts pass the
real promtool and amtool (the Alertmanager one rendered from the environment first)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_binary
from inferwatch import __version__
from inferwatch.generate.config import DEFAULT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RENDER = COMPOSE_DIR / "alertmanager" / "render-config.sh"
FULL_ENV = {
    "AM_WEBHOOK_URL": "https://hooks.example.com/inferwatch",
    "AM_SLACK_API_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "AM_SLACK_CHANNEL": "#ml-oncall",
    "AM_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "AM_EMAIL_TO": "oncall@example.com",
    "AM_SMTP_SMARTHOST": "smtp.example.com:587",
    "AM_SMTP_FROM": "alertmanager@example.com",
    "AM_SMTP_USERNAME": "alertmanager",
    "AM_SMTP_PASSWORD": 'p"ss\\word',
}


def volumes(service: str) -> list[tuple[Path | str, str]]:
    """(host path or named volume, container path) of each mount of `service`."""
    mounts = []
    for entry in SERVICES[service].get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts.append((COMPOSE_DIR / source if source.startswith(".") else source, target))
    return mounts


def host_path(service: str, container_path: str) -> Path:
    """Where `container_path` of `service` comes from on the host, through its mounts."""
    for source, target in volumes(service):
        if isinstance(source, Path) and (container_path == target
                                         or container_path.startswith(target + "/")):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{service}: {container_path} is not mounted from the host")


def job_of(selector: str) -> str:
    match = re.fullmatch(r'job="([^"]+)"', selector)
    assert match, f"expected a job selector, got {selector}"
    return match.group(1)


# --- the compose file ------------------------------------------------------------------------


def test_stack_has_every_component() -> None:
    assert {"prometheus", "alertmanager", "grafana", "exporter", "exporter-gpu", "model",
            "traffic", "pager"} <= set(SERVICES)


def test_every_image_is_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image", "")
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image!r}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.M)
    assert bases and all(re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", b) for b in bases), bases


def test_built_image_is_tagged_with_the_package_version() -> None:
    built = [s for s in SERVICES.values() if "build" in s]
    assert built and {s["image"] for s in built} == {f"inferwatch:{__version__}"}
    assert all((COMPOSE_DIR / s["build"]["context"] / s["build"]["dockerfile"]).is_file()
               for s in built)


def test_published_ports_bind_loopback_only() -> None:
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert published
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r}"


def test_grafana_requires_a_password_and_keeps_anonymous_access_off() -> None:
    env = SERVICES["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GF_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_prometheus_has_exemplars_and_no_admin_or_lifecycle_api() -> None:
    command = SERVICES["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    for flag in command:
        assert not flag.startswith(("--web.enable-admin-api", "--web.enable-lifecycle",
                                    "--web.enable-remote-write-receiver")), flag


def test_every_mounted_host_path_exists() -> None:
    for name in SERVICES:
        for source, _ in volumes(name):
            if isinstance(source, Path):
                assert source.exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_gpu_exporter_is_an_opt_in_profile_on_the_nvidia_runtime() -> None:
    gpu = SERVICES["exporter-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["runtime"] == "nvidia"
    assert "--collector.gpu" in gpu["command"]
    # NVML reports host pids: per-process GPU memory needs the host's pid namespace.
    assert gpu["pid"] == "host"
    assert "--no-collector.gpu" in SERVICES["exporter"]["command"]
    assert all("profiles" not in s for n, s in SERVICES.items() if n != "exporter-gpu")


# --- Prometheus ------------------------------------------------------------------------------


def prometheus_config() -> tuple[Path, dict[str, Any]]:
    command = SERVICES["prometheus"]["command"]
    path = next(f.split("=", 1)[1] for f in command if f.startswith("--config.file="))
    config_path = host_path("prometheus", path)
    return config_path, yaml.safe_load(config_path.read_text())


def test_prometheus_jobs_match_the_generated_selectors() -> None:
    _, config = prometheus_config()
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert job_of(DEFAULT.selectors.model) in jobs
    assert job_of(DEFAULT.selectors.exporter) in jobs
    exporter_job = next(j for j in config["scrape_configs"]
                        if j["job_name"] == job_of(DEFAULT.selectors.exporter))
    # Above the exporter's --scrape.timeout (5 s) plus its one second of margin.
    assert float(exporter_job["scrape_timeout"].rstrip("s")) > 6


def test_prometheus_loads_exactly_the_generated_rule_files() -> None:
    _, config = prometheus_config()
    loaded = sorted(p for pattern in config["rule_files"]
                    for p in host_path("prometheus", pattern).parent.glob(Path(pattern).name))
    assert [p.resolve() for p in loaded] == sorted(
        (ROOT / "alerts").glob("*.yml")), loaded


@pytest.mark.integration
def test_promtool_checks_the_mounted_prometheus_config_and_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    _, config = prometheus_config()
    # The container paths, resolved through the compose mounts to the files they are.
    config["rule_files"] = [str(host_path("prometheus", p)) for p in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(checked)], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for rules in sorted((ROOT / "alerts").glob("*.yml")):
        assert f"Checking {rules}" in output and "SUCCESS" in output, output


# --- Alertmanager ----------------------------------------------------------------------------


def render_alertmanager(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = tmp_path / "alertmanager.yml"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([shutil.which("sh") or "/bin/sh", str(RENDER), str(out)],
                          env={**base, **env}, capture_output=True, text=True, timeout=30)


def amtool_check(path: Path) -> None:
    amtool = require_binary("amtool")
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr + path.read_text()


def test_alertmanager_mounts_the_render_script_and_runs_it_first() -> None:
    service = SERVICES["alertmanager"]
    entrypoint = service["entrypoint"]
    script = host_path("alertmanager", entrypoint[1])
    assert script.resolve() == RENDER.resolve()
    rendered = entrypoint[2]
    assert f"--config.file={rendered}" in entrypoint
    assert "--cluster.listen-address=" in entrypoint
    # Every variable the script reads is passed from the compose environment.
    read = set(re.findall(r"\$\{(AM_[A-Z_]+)", RENDER.read_text()))
    assert read <= set(service["environment"])


@pytest.mark.integration
def test_default_alertmanager_config_prints_pages_and_passes_amtool(tmp_path: Path) -> None:
    result = render_alertmanager(tmp_path, {})
    assert result.returncode == 0, result.stderr
    amtool_check(tmp_path / "alertmanager.yml")
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert {r["name"] for r in config["receivers"]} == {"page", "ticket"}
    for receiver in config["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}
        assert receiver["webhook_configs"] == [{"url": "http://pager:9095/",
                                                "send_resolved": True}]
    route = config["route"]
    assert route["receiver"] == "ticket"
    assert route["routes"] == [{"receiver": "page", "matchers": ['severity="critical"']}]


@pytest.mark.integration
def test_every_receiver_from_the_environment_passes_amtool(tmp_path: Path) -> None:
    result = render_alertmanager(tmp_path, FULL_ENV)
    assert result.returncode == 0, result.stderr
    amtool_check(tmp_path / "alertmanager.yml")
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    page, ticket = (next(r for r in config["receivers"] if r["name"] == n)
                    for n in ("page", "ticket"))
    assert [w["url"] for w in page["webhook_configs"]] == [
        "http://pager:9095/", FULL_ENV["AM_WEBHOOK_URL"]]
    assert page["slack_configs"][0]["api_url"] == FULL_ENV["AM_SLACK_API_URL"]
    assert page["slack_configs"][0]["channel"] == FULL_ENV["AM_SLACK_CHANNEL"]
    assert page["pagerduty_configs"][0]["routing_key"] == FULL_ENV["AM_PAGERDUTY_ROUTING_KEY"]
    assert page["email_configs"][0]["to"] == FULL_ENV["AM_EMAIL_TO"]
    assert "pagerduty_configs" not in ticket  # warnings open tickets, they do not page
    assert config["global"]["smtp_auth_password"] == FULL_ENV["AM_SMTP_PASSWORD"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_single_line_value_reaches_the_config_unchanged(tmp_path: Path, value: str) -> None:
    result = render_alertmanager(tmp_path, {"AM_SLACK_API_URL": "https://hooks.slack.com/x",
                                            "AM_SLACK_CHANNEL": value})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert config["receivers"][0]["slack_configs"][0]["channel"] == value


@pytest.mark.parametrize("env, problem", [
    ({"AM_WEBHOOK_URL": "https://a.example.com/\nreceivers: []"}, "AM_WEBHOOK_URL"),
    ({"AM_EMAIL_TO": "oncall@example.com"}, "AM_SMTP_SMARTHOST"),
])
def test_render_refuses_a_bad_environment_naming_the_variable(
        tmp_path: Path, env: dict[str, str], problem: str) -> None:
    result = render_alertmanager(tmp_path, env)
    assert result.returncode == 2
    assert problem in result.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


# --- Grafana ---------------------------------------------------------------------------------


def test_grafana_datasource_is_the_one_the_dashboards_default_to() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["name"] == DEFAULT.dashboards.datasource and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in SERVICES


def test_grafana_provisions_the_generated_dashboards_from_the_mounted_path() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    providers = yaml.safe_load((provisioning / "dashboards" / "inferwatch.yml").read_text())
    (provider,) = providers["providers"]
    mounted = host_path("grafana", provider["options"]["path"])
    assert mounted.resolve() == (ROOT / "dashboards").resolve()
    dashboards = sorted(mounted.glob("*.json"))
    assert [d.name for d in dashboards] == ["champion-challenger.json", "model-overview.json",
                                            "model-quality.json", "resources.json", "slo.json"]
    for path in dashboards:
        templating = json.loads(path.read_text())["templating"]["list"]
        datasource = next(v for v in templating if v["type"] == "datasource")
        assert datasource["current"]["value"] == DEFAULT.dashboards.datasource
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()


def test_env_example_names_the_required_password() -> None:
    example = (COMPOSE_DIR / ".env.example").read_text()
    assert re.search(r"^GF_ADMIN_PASSWORD=$", example, flags=re.M)
    assert set(re.findall(r"^#?\s*(AM_[A-Z_]+)=", example, flags=re.M)) == {
        k for k in SERVICES["alertmanager"]["environment"] if k != "AM_PAGER_URL"}


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _seconds(duration: str) -> int:
    """A Prometheus duration (one or more number-unit pairs, `1d12h`) in seconds."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts if u != "ms")


def test_prometheus_keeps_the_longest_range_any_dashboard_or_rule_reads() -> None:
    # The SLO dashboard reads [30d]: kept 15 days, its 30-day availability and budget quietly
    # covered 15, and an incident 16 to 30 days old looked like budget recovered.
    flags = SERVICES["prometheus"]["command"]
    kept = [f.split("=", 1)[1] for f in flags if f.startswith("--storage.tsdb.retention.time=")]
    assert len(kept) == 1, flags
    texts = [p.read_text() for p in sorted((ROOT / "dashboards").glob("*.json"))]
    texts += [p.read_text() for p in sorted((ROOT / "alerts").glob("*.yml"))]
    ranges = {r for text in texts for r in re.findall(r"\[(\d+[smhdwy][\dsmhdwy]*)[\]:]", text)}
    longest = max(ranges, key=_seconds)
    assert _seconds(longest) >= 30 * 86400, longest  # the scan found the SLO period
    assert _seconds(kept[0]) > _seconds(longest), (kept[0], longest)
