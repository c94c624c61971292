"""What routes receive: the Temporal client, the asyncpg pool and the settings."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from temporalio.client import Client

from wiring.settings import Settings


def _client(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


TemporalClient = Annotated[Client, Depends(_client)]
DbPool = Annotated[asyncpg.Pool, Depends(_pool)]
AppSettings = Annotated[Settings, Depends(_settings)]
