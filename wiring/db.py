"""The asyncpg pool: JSON columns decoded to Python values on every connection, every call bounded.

asyncpg bounds a statement (`command_timeout`) and opening a connection (`timeout`), but waits
for a pooled connection forever unless each `acquire()` is given a timeout, and `Pool.fetch`,
`Pool.execute` and the others never give one. `BoundedPool` gives every acquire without a timeout
of its own the pool's `acquire_timeout_s`, at the one seam they all pass through
(`Pool.acquire`); a timed-out acquire raises `PoolAcquireTimeout`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

if TYPE_CHECKING:  # the stubs' classes are generic; asyncpg's own are not
    _Pool = asyncpg.Pool[asyncpg.Record]
    _AcquireContext = PoolAcquireContext[asyncpg.Record]
    _Proxy = PoolConnectionProxy[asyncpg.Record]
else:
    _Pool, _AcquireContext, _Proxy = asyncpg.Pool, PoolAcquireContext, PoolConnectionProxy


class PoolAcquireTimeout(TimeoutError):
    """No pooled connection within the acquire timeout: the pool is exhausted, or the database
    does not answer a new connection. The API answers it 503 `database-unavailable`."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(f"no database connection within {timeout} s")
        self.timeout = timeout


async def _init_connection(conn: asyncpg.Connection) -> None:
    for pg_type in ("json", "jsonb"):
        await conn.set_type_codec(
            pg_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class _BoundedAcquire(_AcquireContext):
    """`pool.acquire()` as asyncpg makes it (an `async with` block or an awaitable), with a
    timeout that surfaces as `PoolAcquireTimeout`."""

    __slots__ = ()

    async def __aenter__(self) -> _Proxy:
        try:
            return await super().__aenter__()
        except TimeoutError as exc:
            raise PoolAcquireTimeout(self.timeout) from exc

    def __await__(self) -> Any:
        return self._acquire_for_caller().__await__()

    async def _acquire_for_caller(self) -> _Proxy:
        """`con = await pool.acquire()`: the caller releases it with `pool.release(con)`."""
        connection = await self.__aenter__()
        self.connection, self.done = None, True
        return connection


class BoundedPool(_Pool):
    """An asyncpg pool whose every acquire is bounded (see the module's docstring)."""

    __slots__ = ("_acquire_timeout_s",)

    def __init__(self, *connect_args: Any, acquire_timeout_s: float | None, **kwargs: Any) -> None:
        self._acquire_timeout_s = acquire_timeout_s
        super().__init__(*connect_args, **kwargs)

    @property
    def acquire_timeout_s(self) -> float | None:
        return self._acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> _BoundedAcquire:
        return _BoundedAcquire(self, self._acquire_timeout_s if timeout is None else timeout)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout_s: float | None = 10.0,
    connect_timeout_s: float = 5.0,
    acquire_timeout_s: float | None = 5.0,
) -> asyncpg.Pool:
    """The pool every process uses. Every call is bounded: a statement (`command_timeout_s`),
    opening a connection (`connect_timeout_s`) and waiting for a pooled one
    (`acquire_timeout_s`; it also bounds returning the connection). A stopped, frozen or
    overloaded database is an error the caller can answer, never a request that hangs."""
    pool = BoundedPool(
        dsn,
        acquire_timeout_s=acquire_timeout_s,
        min_size=min_size,
        max_size=max_size,
        # asyncpg.create_pool's defaults
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        init=_init_connection,
        command_timeout=command_timeout_s,
        timeout=connect_timeout_s,
    )
    await pool
    return pool
