"""`rectify keys create|revoke|list`: the API keys, and the development keys `make run` prints.

Everything the operator typed is checked before the database is touched, so a refused command
writes nothing. A new key's secret is printed once and stored nowhere (only its hash is).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

import asyncpg

from domain.roles import Role
from wiring.api_keys import (
    PREFIX_PATTERN,
    ApiKey,
    ApiKeyRepository,
    CreatedKey,
    InvalidKeySpec,
    KeySpec,
    key_prefix,
)
from wiring.devstack import Banner
from wiring.settings import Settings

DEV_OFFICE = "beijing"
DEV_KEYS_FILE = "dev-keys.json"
DEV_CREATED_BY = "rectify run"


def add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys",
        help="API keys: create one for a role and an office, revoke one, list them",
        description="API keys authenticate callers of the HTTP API. Roles: "
        + ", ".join(r.value for r in Role)
        + ". enforcement-system and officer keys act for one office; supervisor and admin keys "
        "for every office unless given one.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it (shown this once)")
    create.add_argument("--role", required=True, help=f"one of: {', '.join(r.value for r in Role)}")
    create.add_argument(
        "--office", help="the office it acts for (required for enforcement-system and officer)"
    )
    create.add_argument("--label", required=True, help="whose key it is, e.g. 'Beijing desk 3'")
    create.add_argument("--by", dest="created_by", help="who creates it (default: your login)")
    revoke = actions.add_parser("revoke", help="revoke a key at once (it is kept, marked revoked)")
    revoke.add_argument("prefix", help="the key's prefix (12 hex digits), or the whole key")
    actions.add_parser("list", help="every key: prefix, role, office, label, status")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


async def create_key(dsn: str, spec: KeySpec) -> CreatedKey:
    conn = await asyncpg.connect(dsn)
    try:
        return await ApiKeyRepository(conn).create(spec)
    finally:
        await conn.close()


async def revoke_key(dsn: str, prefix: str) -> tuple[ApiKey, bool] | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await ApiKeyRepository(conn).revoke(prefix)
    finally:
        await conn.close()


async def list_keys(dsn: str) -> list[ApiKey]:
    conn = await asyncpg.connect(dsn)
    try:
        return await ApiKeyRepository(conn).all()
    finally:
        await conn.close()


def format_created(created: CreatedKey) -> str:
    record = created.record
    return "\n".join(
        [
            f"API key {record.prefix} created: role {record.role.value}, "
            f"{record.offices}, label {record.label!r}",
            "",
            f"    {created.key}",
            "",
            "This is the only time the key is shown: store it now. "
            f"Revoke it with `rectify keys revoke {record.prefix}`.",
        ]
    )


def format_list(keys: list[ApiKey]) -> str:
    if not keys:
        return "no API keys yet: create one with `rectify keys create`"
    rows = [("PREFIX", "ROLE", "OFFICE", "LABEL", "CREATED BY", "CREATED", "STATUS")]
    for k in keys:
        status = f"revoked {k.revoked_at:%Y-%m-%d %H:%M %Z}" if k.revoked_at else "active"
        created = f"{k.created_at:%Y-%m-%d %H:%M %Z}"
        rows.append(
            (k.prefix, k.role.value, k.office or "(all)", k.label, k.created_by, created, status)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _prefix_of(text: str) -> str | None:
    text = text.strip()
    return text if PREFIX_PATTERN.match(text) else key_prefix(text)


def run_keys_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `rectify keys ...`: 0 done, 1 the database refused or no such key, 2 bad usage."""
    prefix = f"rectify keys {args.keys_command}"
    try:
        if args.keys_command == "create":
            try:
                spec = KeySpec.checked(
                    args.role, args.office, args.label, args.created_by or _operator()
                )
            except InvalidKeySpec as exc:
                print(f"{prefix}: {exc}", file=sys.stderr)
                return 2
            dsn = settings.require_database_url()
            print(format_created(asyncio.run(create_key(dsn, spec))))
        elif args.keys_command == "revoke":
            key_id = _prefix_of(args.prefix)
            if key_id is None:
                print(
                    f"{prefix}: {args.prefix!r} is not a key prefix (12 hex digits) or a key",
                    file=sys.stderr,
                )
                return 2
            dsn = settings.require_database_url()
            revoked = asyncio.run(revoke_key(dsn, key_id))
            if revoked is None:
                print(f"{prefix}: no API key {key_id}", file=sys.stderr)
                return 1
            record, now = revoked
            assert record.revoked_at is not None
            when = f"{record.revoked_at:%Y-%m-%d %H:%M %Z}"
            print(
                f"API key {key_id} ({record.role.value}, {record.label!r}) "
                + (f"revoked: refused from now on ({when})" if now else f"was revoked at {when}")
            )
        else:
            print(format_list(asyncio.run(list_keys(settings.require_database_url()))))
    except OSError as exc:
        print(f"{prefix}: cannot reach DATABASE_URL: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{prefix}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


# --- development keys (`make run`) ----------------------------------------------------------


def dev_key_spec(role: Role) -> KeySpec:
    """Office-bound roles act for Beijing; the dev admin key acts for every office."""
    office = None if role is Role.ADMIN else DEV_OFFICE
    return KeySpec(role, office, f"development {role.value} key", DEV_CREATED_BY)


def _read_saved(path: Path) -> dict[str, str]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {k: v for k, v in saved.items() if isinstance(k, str) and isinstance(v, str)}


def _write_private(path: Path, keys: dict[str, str]) -> None:
    """Write the file readable by its owner only (0600), replacing any older one at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=2)
        out.write("\n")
    os.chmod(partial, 0o600)  # an older partial file may have kept looser permissions
    os.replace(partial, path)


async def ensure_dev_keys(dsn: str, data_dir: Path) -> dict[Role, str]:
    """One key per role, reused from DATA_DIR/dev-keys.json while the database still knows
    it unrevoked; created (and the file rewritten) otherwise."""
    path = data_dir / DEV_KEYS_FILE
    saved = _read_saved(path)
    keys: dict[Role, str] = {}
    conn = await asyncpg.connect(dsn)
    try:
        repo = ApiKeyRepository(conn)
        async with conn.transaction():
            for role in Role:
                spec, key = dev_key_spec(role), saved.get(role.value)
                record = await repo.find(key) if key else None
                usable = (
                    record is not None
                    and record.revoked_at is None
                    and (record.role, record.office) == (spec.role, spec.office)
                )
                keys[role] = key if usable and key else (await repo.create(spec)).key
    finally:
        await conn.close()
    current = {r.value: k for r, k in keys.items()}
    if current != saved or not path.exists() or path.stat().st_mode & 0o077:
        _write_private(path, current)
    return keys


def format_dev_keys(keys: dict[Role, str], path: Path) -> list[str]:
    width = max(len(role.value) for role in keys)
    lines = [f"  Dev API keys (send as `Authorization: Bearer <key>`; kept in {path}):"]
    for role, key in keys.items():
        scope = dev_key_spec(role).office or "every office"
        lines.append(f"    {role.value.ljust(width)}  {key}  ({scope})")
    return lines


async def dev_keys_banner(dsn: str, settings: Settings) -> Banner:
    """What `rectify run` adds to its banner: the dev keys, or why there are none."""
    if settings.rectify_env == "production":
        return Banner(["  API keys     production: create them with `rectify keys create`"])
    keys = await ensure_dev_keys(dsn, settings.data_dir)
    return Banner(format_dev_keys(keys, settings.data_dir / DEV_KEYS_FILE))
