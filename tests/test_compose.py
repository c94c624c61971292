"""Static checks of docker-compose.yml and the Dockerfile (pure parsing, no Docker needed)."""

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ("migrate", "worker", "api")
SECRETS = ("POSTGRES_USER", "POSTGRES_PASSWORD")
SECRETS_SET = {"POSTGRES_USER": "rectify_owner", "POSTGRES_PASSWORD": "s3cret-pw"}

# Compose's interpolation: $$, ${VAR}, ${VAR-d}, ${VAR:-d}, ${VAR?m}, ${VAR:?m} and bare $VAR;
# any other `$` is an error to Compose, so it is one here too.
_TOKEN = re.compile(
    r"\$(?:(?P<esc>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*)|(?P<bad>))"
)


def interpolate(node: Any, env: dict[str, str], missing: list[str] | None = None) -> Any:
    """Interpolate every string value in a parsed compose file; raise naming unset required vars."""
    top = missing is None
    missing = [] if missing is None else missing

    def sub(m: re.Match[str]) -> str:
        if m["esc"]:
            return "$"
        if m["bad"] is not None:
            raise ValueError(f"invalid interpolation: {m.string[m.start() : m.start() + 20]!r}")
        name, op = m["braced"] or m["bare"], m["op"] or ""
        value = env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and unset:
            missing.append(f"{name} ({m['arg']})")
        if op.endswith("-") and unset:
            return str(m["arg"])
        return value or ""

    if isinstance(node, dict):
        out: Any = {k: interpolate(v, env, missing) for k, v in node.items()}
    elif isinstance(node, list):
        out = [interpolate(v, env, missing) for v in node]
    else:
        out = _TOKEN.sub(sub, node) if isinstance(node, str) else node
    if top and missing:
        raise KeyError("required variables not set: " + ", ".join(missing))
    return out


def test_expected_services_exist() -> None:
    expected = {"postgres", "temporal", "temporal-ui", "migrate", "worker", "api"}
    assert expected <= set(SERVICES)
    assert "postgres-data" in COMPOSE["volumes"]


def test_third_party_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        if "build" in svc:
            continue
        repo, _, tag = svc["image"].rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {svc['image']!r} is not pinned"


def test_dependencies_on_postgres_and_temporal_wait_until_healthy() -> None:
    for name, svc in SERVICES.items():
        for dep in {"postgres", "temporal"} & set(svc.get("depends_on", {})):
            assert svc["depends_on"][dep] == {"condition": "service_healthy"}, (name, dep)
    assert "postgres" in SERVICES["temporal"]["depends_on"]
    assert "temporal" in SERVICES["temporal-ui"]["depends_on"]


@pytest.mark.parametrize("name", ["worker", "api"])
def test_app_waits_for_postgres_temporal_and_finished_migrations(name: str) -> None:
    deps = SERVICES[name]["depends_on"]
    assert {"postgres", "temporal"} <= set(deps)
    assert deps["migrate"] == {"condition": "service_completed_successfully"}
    assert SERVICES["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", ["postgres", "temporal", "api"])
def test_service_has_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)


def test_secrets_are_only_used_as_required_variables() -> None:
    for var in SECRETS:
        uses = [m.end() for m in re.finditer(r"(?<!\$)\$\{" + var + r"\b", COMPOSE_TEXT)]
        assert uses, f"{var} is never used"
        assert all(COMPOSE_TEXT.startswith(":?", end) for end in uses), f"{var} without :?"


@pytest.mark.parametrize("name", ["worker", "api"])
def test_app_environment_is_resolved_and_production(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert isinstance(env, dict) and "<<" not in env, "the x-rectify-env anchor was not merged"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["RECTIFY_ENV"] == "production"
    assert env["LOG_FORMAT"] == "json"
    url = urlsplit(interpolate(env["DATABASE_URL"], SECRETS_SET))
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password) == (SECRETS_SET["POSTGRES_USER"], "s3cret-pw")


def test_app_services_build_one_image_from_the_repo_dockerfile() -> None:
    assert (ROOT / "Dockerfile").is_file()
    assert {SERVICES[n]["build"] for n in APP_SERVICES} == {"."}
    assert len({SERVICES[n]["image"] for n in APP_SERVICES}) == 1


def test_dockerfile_runs_as_non_root_and_copies_every_package() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    sources = [s.rstrip("/") for ln in lines if ln.startswith("COPY ") for s in ln.split()[1:-1]]
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.split(".")[0] for p in packages["packages"]} | {"migrations"} <= set(sources)
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"Dockerfile copies paths absent from the repo: {missing}"


def test_commands_reference_modules_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.M)
    assert cmd, "Dockerfile has no exec-form CMD"
    commands = [json.loads(cmd[1])] + [SERVICES[n]["command"] for n in APP_SERVICES]
    commands = list(dict.fromkeys(map(tuple, commands)))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    missing = []
    for command in commands:
        if command[:2] == ("python", "-m"):
            target = Path(command[2].replace(".", "/"), "__main__.py")
        else:
            target = Path(scripts[command[0]].split(":")[0].replace(".", "/") + ".py")
        missing += [f"{command}: {target}"] if not (ROOT / target).is_file() else []
    assert not missing, f"commands whose module does not exist: {missing}"


def test_interpolation_without_secrets_names_them() -> None:
    assert interpolate("$${X} ${A:-d} ${A-e}", {"A": ""}) == "${X} d "
    with pytest.raises(KeyError) as err:
        interpolate(COMPOSE, {})
    assert all(var in str(err.value) for var in SECRETS)


def test_interpolation_with_secrets_resolves_every_variable() -> None:
    resolved = interpolate(COMPOSE, SECRETS_SET)
    assert "${" not in json.dumps(resolved)
    app_env = [resolved["services"][n]["environment"] for n in APP_SERVICES]
    assert all(value for env in app_env for value in env.values()), "an app variable is empty"
    assert resolved["services"]["worker"]["deploy"]["replicas"] == "2"
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_DB"] == "rectify"
    assert resolved["services"]["api"]["image"] == "rectify:latest"
