"""The asyncpg pool: JSON columns decoded to Python values on every connection."""

from __future__ import annotations

import json

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(
            pg_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout_s: float | None = 10.0,
    connect_timeout_s: float = 5.0,
) -> asyncpg.Pool:
    """The pool every process uses. Every statement is bounded (`command_timeout_s`: a stopped
    or frozen database is an error the caller can answer, never a request that hangs), and so is
    opening a connection."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=command_timeout_s,
        timeout=connect_timeout_s,
    )
    assert pool is not None
    return pool
