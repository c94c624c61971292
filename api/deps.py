"""What routes receive: the Temporal client, the asyncpg pool, the settings, the keys and the
admission."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from temporalio.client import Client

from api.admission import Admission
from wiring.keys import Keyring
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


def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def _admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


async def admit_new_work(admission: Annotated[Admission, Depends(_admission)]) -> None:
    """Refuse with 429, `Retry-After` and the backlog named while the worker is behind
    (api/admission.py); for the routes that start new work: opening a case or a campaign."""
    await admission.admit()


TemporalClient = Annotated[Client, Depends(_client)]
DbPool = Annotated[asyncpg.Pool, Depends(_pool)]
AppSettings = Annotated[Settings, Depends(_settings)]
Keys = Annotated[Keyring, Depends(_keyring)]
AdmissionControl = Annotated[Admission, Depends(_admission)]
Admitted = Annotated[None, Depends(admit_new_work)]
