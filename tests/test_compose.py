"""Static checks of docker-compose.yml and the Dockerfile (pure parsing, no Docker needed)."""

import base64
import json
import re
import shlex
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
APP_SERVICES = ("migrate", "worker", "api", "cli")
CODEC_KEYS = ("PAYLOAD_KEYS", "SUBJECT_HASH_KEY")
SECRETS = ("POSTGRES_USER", "POSTGRES_PASSWORD", *CODEC_KEYS)
SECRETS_SET = {
    "POSTGRES_USER": "rectify_owner",
    "POSTGRES_PASSWORD": "s3cret-pw",
    "PAYLOAD_KEYS": "k2:"
    + base64.b64encode(b"\x02" * 32).decode()
    + ",k1:"
    + base64.b64encode(b"\x01" * 32).decode(),
    "SUBJECT_HASH_KEY": base64.b64encode(b"\x03" * 32).decode(),
}
SCHEMA_DIR = "/etc/temporal/schema/postgresql/v12"

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


def image(name: str) -> tuple[str, str]:
    repo, _, tag = SERVICES[name]["image"].rpartition(":")
    return repo, tag


def resolved_env(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    resolved: dict[str, str] = interpolate(SERVICES[name]["environment"], env or SECRETS_SET)
    return resolved


def script(name: str) -> str:
    """The shell script a one-shot job runs, as the shell sees it (after `$$` -> `$`)."""
    svc = SERVICES[name]
    shell, flags = svc["entrypoint"][:2]
    assert shell in ("/bin/sh", "/bin/bash"), f"{name}: not a shell entrypoint"
    # -e: the job fails (and what waits for it does not start) at its first failing step.
    assert flags.startswith("-") and {"e", "c"} <= set(flags), f"{name}: not `sh -ec`"
    text: str = interpolate("\n".join(svc["command"]), SECRETS_SET)
    return text


def test_expected_services_exist() -> None:
    expected = {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        *APP_SERVICES,
    }
    assert expected <= set(SERVICES)
    assert "postgres-data" in COMPOSE["volumes"]


def test_no_auto_setup_image_anywhere() -> None:
    assert "auto-setup" not in COMPOSE_TEXT
    assert all("auto-setup" not in svc.get("image", "") for svc in SERVICES.values())
    assert all("autosetup" not in json.dumps(svc.get("command", "")) for svc in SERVICES.values())


def test_third_party_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        if "build" in svc:
            continue
        repo, tag = image(name)
        assert "$" not in svc["image"], f"{name}: image {svc['image']!r} depends on the environment"
        assert repo and tag and tag != "latest", f"{name}: image {svc['image']!r} is not pinned"
        assert re.match(r"\d+(\.\d+)*", tag), f"{name}: tag {tag!r} names no version"


def test_temporal_runs_the_server_image_after_the_schema_job() -> None:
    server_repo, server_tag = image("temporal")
    assert server_repo == "temporalio/server"
    for job in ("temporal-schema", "temporal-namespace"):
        repo, tag = image(job)
        assert repo == "temporalio/admin-tools", job
        # admin-tools tags are `<server version>[-tctl-…-cli-…]`: its schema files must be the
        # server's own version, or the server starts on a schema it does not expect.
        assert tag == server_tag or tag.startswith(server_tag + "-"), (job, tag, server_tag)
        assert SERVICES[job]["restart"] == "no", f"{job} is a one-shot job"
    deps = SERVICES["temporal"]["depends_on"]
    assert deps["temporal-schema"] == {"condition": "service_completed_successfully"}
    assert SERVICES["temporal-schema"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}
    }


def test_temporal_server_is_configured_for_postgres_by_its_documented_variables() -> None:
    env = resolved_env("temporal")
    assert env["DB"] == "postgres12"
    assert (env["POSTGRES_SEEDS"], env["DB_PORT"]) == ("postgres", "5432")
    assert (env["POSTGRES_USER"], env["POSTGRES_PWD"]) == ("rectify_owner", "s3cret-pw")
    assert env["DBNAME"] != env["VISIBILITY_DBNAME"]
    assert resolved_env("postgres")["POSTGRES_DB"] not in (env["DBNAME"], env["VISIBILITY_DBNAME"])


def test_schema_job_connects_where_the_server_does() -> None:
    job, server = resolved_env("temporal-schema"), resolved_env("temporal")
    assert job["SQL_PLUGIN"] == server["DB"] == "postgres12"
    assert (job["SQL_HOST"], job["SQL_PORT"]) == (server["POSTGRES_SEEDS"], server["DB_PORT"])
    assert (job["SQL_USER"], job["SQL_PASSWORD"]) == (
        server["POSTGRES_USER"],
        server["POSTGRES_PWD"],
    )


def test_schema_job_creates_and_updates_both_stores_of_the_server() -> None:
    text = script("temporal-schema")
    body = re.search(r"setup_store\(\)\s*\{(?P<body>.*?)\n\}", text, re.S)
    assert body, "no setup_store function"
    steps = [shlex.split(ln) for ln in body["body"].splitlines() if "temporal-sql-tool" in ln]
    steps = [s[s.index("temporal-sql-tool") :] for s in steps]
    assert ["temporal-sql-tool", "--db", "$1", "create"] in steps
    assert ["temporal-sql-tool", "--db", "$1", "setup-schema", "-v", "0.0"] in steps
    assert steps[-1] == ["temporal-sql-tool", "--db", "$1", "update-schema", "-d", "$2"]
    # The database is created only when it is not there yet: `create` fails on an existing one.
    assert re.search(r"if ! temporal-sql-tool --db \"\$1\" setup-schema -v 0\.0; then", text)

    calls = [shlex.split(ln) for ln in text.splitlines() if ln.startswith("setup_store ")]
    stores = {db: schema_dir for _, db, schema_dir in calls}
    server = resolved_env("temporal")
    assert stores == {
        server["DBNAME"]: f"{SCHEMA_DIR}/temporal/versioned",
        server["VISIBILITY_DBNAME"]: f"{SCHEMA_DIR}/visibility/versioned",
    }


def test_namespace_job_creates_the_apps_namespace_if_missing() -> None:
    env = resolved_env("temporal-namespace")
    assert env["TEMPORAL_ADDRESS"] == resolved_env("worker")["TEMPORAL_ADDRESS"]
    app_ns = SERVICES["worker"]["environment"]["TEMPORAL_NAMESPACE"]
    assert SERVICES["temporal-namespace"]["environment"]["TEMPORAL_NAMESPACE"] == app_ns
    assert interpolate(app_ns, {}) == "default"
    assert interpolate(app_ns, {"TEMPORAL_NAMESPACE": "rectify"}) == "rectify"
    assert SERVICES["temporal-namespace"]["depends_on"] == {
        "temporal": {"condition": "service_healthy"}
    }
    text = script("temporal-namespace")
    # Idempotent: describe first, create only when that fails.
    describe = text.index("temporal operator namespace describe")
    create = text.index("temporal operator namespace create")
    assert describe < create and re.search(r"if describe; then", text)
    assert '--namespace "$ns"' in text and 'ns="$TEMPORAL_NAMESPACE"' in text


@pytest.mark.parametrize("name", ["worker", "api"])
def test_app_waits_for_postgres_temporal_namespace_and_finished_migrations(name: str) -> None:
    deps = SERVICES[name]["depends_on"]
    assert {"postgres", "temporal"} <= set(deps)
    assert deps["migrate"] == {"condition": "service_completed_successfully"}
    assert deps["temporal-namespace"] == {"condition": "service_completed_successfully"}
    assert SERVICES["migrate"]["restart"] == "no"


def test_dependencies_on_postgres_and_temporal_wait_until_healthy() -> None:
    for name, svc in SERVICES.items():
        for dep in {"postgres", "temporal"} & set(svc.get("depends_on", {})):
            assert svc["depends_on"][dep] == {"condition": "service_healthy"}, (name, dep)
    assert "postgres" in SERVICES["temporal"]["depends_on"]
    assert "temporal" in SERVICES["temporal-ui"]["depends_on"]


def test_every_dependency_exists_and_one_shot_jobs_are_waited_for_to_completion() -> None:
    one_shot = {n for n, svc in SERVICES.items() if svc.get("restart") == "no" and n != "cli"}
    assert one_shot == {"temporal-schema", "temporal-namespace", "migrate"}
    for name, svc in SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in SERVICES, (name, dep)
            expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert cond == {"condition": expected}, (name, dep)
            assert "healthcheck" in SERVICES[dep] or dep in one_shot, (name, dep)


def test_web_ui_decodes_through_the_apis_codec_with_credentials() -> None:
    ui = SERVICES["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    assert interpolate(ui["TEMPORAL_CODEC_ENDPOINT"], {}) == "http://localhost:8000/codec"
    public = {"RECTIFY_PUBLIC_URL": "https://rectify.example.org"}
    assert interpolate(ui["TEMPORAL_CODEC_ENDPOINT"], public) == "https://rectify.example.org/codec"
    assert interpolate(ui["TEMPORAL_ADDRESS"], {}) == "temporal:7233"
    # The default public URL is where the api service is published.
    api_port = urlsplit(interpolate(ui["TEMPORAL_CODEC_ENDPOINT"], {})).port
    assert f"{api_port}:{resolved_env('api')['API_PORT']}" in SERVICES["api"]["ports"]


def test_api_allows_the_web_uis_origin_to_call_the_codec() -> None:
    origins = resolved_env("api")["CODEC_CORS_ORIGINS"].split(",")
    ui_host_port = SERVICES["temporal-ui"]["ports"][0].split(":")[0]
    assert f"http://localhost:{ui_host_port}" in origins
    custom = resolved_env("api", {**SECRETS_SET, "CODEC_CORS_ORIGINS": "https://ui.example.org"})
    assert custom["CODEC_CORS_ORIGINS"] == "https://ui.example.org"
    assert "CODEC_CORS_ORIGINS" not in SERVICES["worker"]["environment"]


@pytest.mark.parametrize("name", APP_SERVICES)
@pytest.mark.parametrize("var", CODEC_KEYS)
def test_app_cannot_start_without_its_codec_keys(name: str, var: str) -> None:
    raw = SERVICES[name]["environment"][var]
    assert re.fullmatch(r"\$\{" + var + r":\?[^}]+\}", raw), f"{name}: {var} is not required"
    assert interpolate(raw, SECRETS_SET) == SECRETS_SET[var]
    for unset in ({k: v for k, v in SECRETS_SET.items() if k != var}, {**SECRETS_SET, var: ""}):
        with pytest.raises(KeyError, match=var):
            interpolate(SERVICES[name], unset)


def test_codec_keys_reach_only_the_rectify_processes() -> None:
    for name, svc in SERVICES.items():
        has = {k for k in CODEC_KEYS if k in json.dumps(svc)}
        assert has == (set(CODEC_KEYS) if name in APP_SERVICES else set()), name


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


@pytest.mark.parametrize("name", APP_SERVICES)
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


def test_cli_runs_only_when_asked() -> None:
    assert SERVICES["cli"]["profiles"] == ["cli"]
    assert SERVICES["cli"]["restart"] == "no"
    assert "ports" not in SERVICES["cli"]


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
    assert (
        resolved["services"]["worker"]["environment"]["PAYLOAD_KEYS"] == SECRETS_SET["PAYLOAD_KEYS"]
    )


def test_production_doc_covers_every_required_variable() -> None:
    doc = (ROOT / "docs" / "production.md").read_text()
    required = set(re.findall(r"\$\{([A-Za-z_]\w*):\?", COMPOSE_TEXT))
    assert required == set(SECRETS)
    assert all(f"`{var}`" in doc for var in required), "docs/production.md misses a secret"
    assert "docker-compose.yml" in doc and "/codec" in doc
