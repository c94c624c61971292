"""One settings class for every Rectify process, read from the environment (and `.env`)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PostgresDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


class Settings(BaseSettings):
    """Where Rectify finds its servers and how it behaves.

    `DATABASE_URL` / `TEMPORAL_ADDRESS` unset means "start the embedded servers" (only `rectify run`
    does that); a production run must name both.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    rectify_env: Literal["development", "production"] = Field(
        "development", description="production refuses the embedded servers"
    )
    database_url: PostgresDsn | None = Field(
        None, description="postgresql://user:pass@host:port/db"
    )
    temporal_address: str | None = Field(None, description="host:port of the Temporal frontend")
    temporal_namespace: str = "default"
    task_queue: str = "rectify-cases"

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)

    log_format: Literal["console", "json"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Embedded dev stack (`make run`).
    data_dir: Path = REPO_ROOT / ".data"
    embedded_postgres_port: int = Field(54329, ge=1, le=65535)
    embedded_temporal_port: int = Field(7233, ge=1, le=65535)
    embedded_temporal_ui_port: int = Field(8233, ge=1, le=65535)
    temporal_ui_url: str | None = Field(
        None, description="base URL of the Temporal Web UI, for links; derived when embedded"
    )

    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="larger request bodies are refused with 413"
    )
    case_answer_timeout_s: float = Field(
        30.0, gt=0, description="how long the API waits for a case workflow to answer"
    )
    case_history_limit: int | None = Field(
        None,
        ge=30,
        description="a case continues-as-new at this many history events (tests, drills);"
        " unset: when the Temporal server suggests it",
    )
    detection_signal_interval_s: float = Field(
        10.0,
        gt=0,
        description="at most one coalesced detections signal per case per this many seconds",
    )
    # Backpressure (wiring/backlog.py): at ~10 cases/s and ~3 tasks per opening, 200 waiting
    # tasks are ~7 s of the worker's time, well inside `case_answer_timeout_s`.
    admission_max_backlog: int = Field(
        200,
        ge=0,
        description="the worker is behind above this many tasks waiting on its task queue"
        " (workflow + activity): new cases and campaigns are refused with 429 and campaigns"
        " wait between waves; 0: never behind (nothing is measured)",
    )
    admission_retry_after_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="the least Retry-After while behind (longer when the server's dispatch rate"
        " says the backlog needs longer, up to 60 s); a paced campaign waits as long",
    )
    admission_refresh_s: float = Field(
        1.0, gt=0, le=60, description="the API measures the backlog at most once per this long"
    )

    migrations_dir: Path = REPO_ROOT / "migrations"
    policies_dir: Path = Field(
        REPO_ROOT / "policies", description="enforcement policy files (YAML or JSON)"
    )
    db_pool_min_size: int = Field(1, ge=0)
    db_pool_max_size: int = Field(10, ge=1)
    db_command_timeout_s: float = Field(
        10.0, gt=0, le=600, description="the longest any one database statement may run"
    )
    db_acquire_timeout_s: float = Field(
        5.0, gt=0, le=600, description="the longest a request waits for a pooled connection"
    )

    # Personal data at rest (wiring/keys.py, wiring/codec.py).
    payload_keys: SecretStr | None = Field(
        None,
        description="AES-256 keys of the payload codec, `id:base64-of-32-bytes,...`: the first"
        " encrypts, every one decrypts (rotation). Unset in development: generated once into"
        " DATA_DIR/keys.json",
    )
    subject_hash_key: SecretStr | None = Field(
        None,
        description="the key (base64, at least 32 bytes) of the subject search attribute's HMAC."
        " Unset in development: generated once into DATA_DIR/keys.json",
    )
    codec_cors_origins: str = Field(
        "",
        description="comma-separated origins (the Temporal Web UI's) allowed to call /codec;"
        " `rectify run` adds the embedded UI's",
    )

    @field_validator("codec_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        """Each an origin, `scheme://host[:port]`: never `*` (with credentials a browser would be
        told any site may read decoded payloads), never a path."""
        origins = [item.strip() for item in value.split(",") if item.strip()]
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], e.g."
                    " https://temporal.example.org (no '*', no path, no trailing '/')"
                )
        return ",".join(origins)

    def codec_origins(self) -> list[str]:
        return [origin for origin in self.codec_cors_origins.split(",") if origin]

    @model_validator(mode="after")
    def _production_names_its_servers(self) -> Settings:
        if self.rectify_env == "production":
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("TEMPORAL_ADDRESS", self.temporal_address),
                    ("PAYLOAD_KEYS", self.payload_keys),
                    ("SUBJECT_HASH_KEY", self.subject_hash_key),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"RECTIFY_ENV=production needs {', '.join(missing)}: "
                    "the embedded servers and generated keys are for development only"
                )
        # PostgresDsn also takes driver schemes (postgresql+psycopg://); asyncpg takes neither.
        if self.database_url is not None and self.database_url.scheme not in (
            "postgresql",
            "postgres",
        ):
            raise ValueError("DATABASE_URL must start with postgresql:// or postgres://")
        return self

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set: start the whole stack with `make run`, "
                "or point DATABASE_URL at a PostgreSQL server"
            )
        return str(self.database_url)

    def require_temporal_address(self) -> str:
        if not self.temporal_address:
            raise RuntimeError(
                "TEMPORAL_ADDRESS is not set: start the whole stack with `make run`, "
                "or point TEMPORAL_ADDRESS at a Temporal frontend"
            )
        return self.temporal_address


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
