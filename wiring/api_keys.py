"""API keys: their format, how they are hashed, and the one place their SQL lives.

A key reads `rk_<prefix>_<secret>`: `prefix` is 12 hex digits, public, the key's name in logs, the
audit trail and `rectify keys`; `secret` is 256 random bits, shown once when the key is created
and stored nowhere. The table holds the SHA-256 of the whole key.

Why a plain SHA-256 and not bcrypt/argon2 or an HMAC with a server-side pepper: the secret is
256 bits from `secrets`, not a password a person chose, so nobody can guess it from its hash —
brute force over 2**256 is out of reach with any hash, and a deliberately slow one would only
add CPU to every request. A pepper would protect low-entropy secrets against a leak of the table
alone, at the price of one more secret every API process and the CLI must share; these secrets
need no such protection. Lookup is by the prefix (indexed, unique); the hash is then compared in
constant time.

Shared by the API (`api/auth.py`, which only reads) and the CLI (`ops/keys_cli.py`, which creates,
lists and revokes).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from domain.roles import Role

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


# These act for one office; a supervisor or an admin key without an office acts for all.
OFFICE_REQUIRED = frozenset({Role.ENFORCEMENT_SYSTEM, Role.OFFICER})

KEY_PATTERN = re.compile(r"^rk_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
PREFIX_PATTERN = re.compile(r"^[0-9a-f]{12}$")
MAX_OFFICE, MAX_LABEL, MAX_CREATED_BY = 500, 200, 200


class InvalidKeySpec(ValueError):
    """A key that must not be created (bad role, missing office, empty label...)."""


def key_hash(key: str) -> bytes:
    """SHA-256 of the whole key (see the module docstring for why no slower hash)."""
    return hashlib.sha256(key.encode()).digest()


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key; None for anything else."""
    match = KEY_PATTERN.match(key)
    return match["prefix"] if match else None


def _text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise InvalidKeySpec(f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidKeySpec(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidKeySpec(f"{name} must not contain NUL characters")
    return value


@dataclass(frozen=True)
class KeySpec:
    """What a new key is: checked before anything touches the database."""

    role: Role
    office: str | None
    label: str
    created_by: str

    @classmethod
    def checked(cls, role: str, office: str | None, label: str, created_by: str) -> KeySpec:
        try:
            parsed = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidKeySpec(f"unknown role {role!r}: expected one of {roles}") from None
        office = _text("the office", office, MAX_OFFICE)
        if office is None and parsed in OFFICE_REQUIRED:
            raise InvalidKeySpec(
                f"an {parsed.value} key acts for one office: give --office "
                "(only supervisor and admin keys may act for every office)"
            )
        checked_label = _text("the label", label, MAX_LABEL)
        checked_by = _text("created_by", created_by, MAX_CREATED_BY)
        assert checked_label is not None and checked_by is not None
        return cls(parsed, office, checked_label, checked_by)


@dataclass(frozen=True)
class ApiKey:
    """A key as the table holds it (never its secret)."""

    prefix: str
    role: Role
    office: str | None
    label: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def offices(self) -> str:
        return self.office or "every office"

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls(
            prefix=row["prefix"],
            role=Role(row["role"]),
            office=row["office"],
            label=row["label"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


@dataclass(frozen=True)
class CreatedKey:
    """A key just created: `key` is the only copy of its secret."""

    key: str
    record: ApiKey


_COLUMNS = "prefix, role, office, label, created_by, created_at, revoked_at"


class ApiKeyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(self, spec: KeySpec) -> CreatedKey:
        for _ in range(5):  # a prefix taken already (1 in 2**48): draw again
            prefix = secrets.token_hex(6)
            key = f"rk_{prefix}_{secrets.token_urlsafe(32)}"
            row = await self._conn.fetchrow(
                f"""
                INSERT INTO api_keys (prefix, key_hash, role, office, label, created_by)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (prefix) DO NOTHING
                RETURNING {_COLUMNS}
                """,
                prefix,
                key_hash(key),
                spec.role.value,
                spec.office,
                spec.label,
                spec.created_by,
            )
            if row is not None:
                return CreatedKey(key, ApiKey.from_row(row))
        raise RuntimeError("could not draw an unused key prefix")

    async def find(self, key: str) -> ApiKey | None:
        """The record of this very key (revoked or not); None when no key matches."""
        prefix = key_prefix(key)
        if prefix is None:
            return None
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE prefix = $1", prefix
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), key_hash(key)):
            return None
        return ApiKey.from_row(row)

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        """The record of the key with this prefix (revoked or not): for a signed session that
        names it (the codec's sign-in), never for a presented key (that is `find`)."""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = $1", prefix
        )
        return None if row is None else ApiKey.from_row(row)

    async def revoke(self, prefix: str) -> tuple[ApiKey, bool] | None:
        """Revoke a key: (its record, whether it was revoked now). None: no such key."""
        async with self._conn.transaction():
            row = await self._conn.fetchrow(
                f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = $1 FOR UPDATE", prefix
            )
            if row is None:
                return None
            if row["revoked_at"] is not None:
                return ApiKey.from_row(row), False
            row = await self._conn.fetchrow(
                f"UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 RETURNING {_COLUMNS}",
                prefix,
            )
            assert row is not None
            return ApiKey.from_row(row), True

    async def all(self) -> list[ApiKey]:
        rows = await self._conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [ApiKey.from_row(row) for row in rows]
