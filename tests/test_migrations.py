"""The migration runner: in order, once, under a lock; an edited landed file is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import MIGRATIONS, scratch_database
from wiring.migrate import MigrationError, load_migrations, migrate


@pytest.fixture
async def scratch_dsn(pg_dsn: str, pool: asyncpg.Pool):
    """A fresh, empty database on the session server."""
    async with scratch_database(pg_dsn, migrated=False) as dsn:
        yield dsn


async def test_project_migrations_apply_once(scratch_dsn: str) -> None:
    first = await migrate(scratch_dsn, MIGRATIONS)
    assert first == [f"{m.version:04d}_{m.name}" for m in load_migrations(MIGRATIONS)]
    assert await migrate(scratch_dsn, MIGRATIONS) == []


async def test_concurrent_runners_apply_each_migration_once(scratch_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(scratch_dsn, MIGRATIONS) for _ in range(3)))
    assert sorted(len(r) for r in results) == [0, 0, len(load_migrations(MIGRATIONS))]


async def test_edited_migration_is_refused(scratch_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (id int);")
    await migrate(scratch_dsn, tmp_path)
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (id bigint);")
    with pytest.raises(MigrationError, match=r"0001_first\.sql changed after it was applied"):
        await migrate(scratch_dsn, tmp_path)


async def test_failed_migration_leaves_nothing_half_written(
    scratch_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE t (id int); SELECT nonsense;")
    with pytest.raises(asyncpg.UndefinedColumnError):
        await migrate(scratch_dsn, tmp_path)
    conn = await asyncpg.connect(scratch_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('t')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["1_short.sql"], "named NNNN_lowercase_name.sql"),
        (["0001_a.sql", "0001_b.sql"], "share version 0001"),
    ],
)
def test_bad_migration_folder_is_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)
