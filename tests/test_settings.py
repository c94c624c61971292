"""Settings: validated at start, with messages naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ops.cli import main as cli_main
from wiring.settings import Settings


def test_production_requires_named_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("RECTIFY_ENV", "production")
    with pytest.raises(ValidationError, match="DATABASE_URL, TEMPORAL_ADDRESS"):
        Settings(_env_file=None)


def test_bad_database_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(ValidationError, match=r"database_url\n  URL scheme should be .postgres."):
        Settings(_env_file=None)


def test_bad_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "99999")
    with pytest.raises(ValidationError, match="api_port"):
        Settings(_env_file=None)


def test_cli_reports_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    assert cli_main(["migrate"]) == 2
    assert "log_format" in capsys.readouterr().err


def test_cli_refuses_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["launch"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


def test_cli_migrate_without_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir("/")  # no .env file
    assert cli_main(["migrate"]) == 1
    assert "DATABASE_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["-m", "worker"], ["-m", "ops", "run"]])
def test_a_bad_policy_file_stops_the_start_naming_file_and_field(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "broken.yaml").write_text('version: "2027.1"\neffective_from: 2027-01-01\n')
    env = {**os.environ, "POLICIES_DIR": str(tmp_path), "DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "broken.yaml: categories: Field required" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    ("origins", "named"),
    [("*", "'*' is not an origin"), ("http://ui.x/", "'http://ui.x/'"), ("ui.x:8080", "ui.x")],
)
def test_codec_origins_are_origins(origins: str, named: str) -> None:
    """With credentials, `*` would let any site read decoded payloads; a path never matches."""
    with pytest.raises(ValueError, match=re.escape(named)):
        Settings(_env_file=None, codec_cors_origins=origins)
    assert Settings(
        _env_file=None, codec_cors_origins=" https://ui.example.org, http://[::1]:8233 ,"
    ).codec_origins() == ["https://ui.example.org", "http://[::1]:8233"]
