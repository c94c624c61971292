"""The keys that keep personal data unreadable at rest: the payload codec's and the subject HMAC's.

- `PAYLOAD_KEYS`: `id:base64,id:base64,...`, each an AES-256 key (32 bytes). The first encrypts
  every new payload; every one decrypts, so a key is rotated by putting a new one first and
  keeping the old ones until no history still needs them. Ids are short names (`k1`, `2026-q4`)
  that go into each payload's metadata.
- `SUBJECT_HASH_KEY`: base64 of at least 32 bytes, the key of the HMAC that the subject search
  attribute holds instead of the subject's identifiers.

Production names both (Settings refuses to start without them). In development, unset keys are
generated once into `DATA_DIR/keys.json` (0600), so `make run`, its worker, its API and the CLI
beside it share them and cases survive a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from domain.models import SubjectIdentifiers
from wiring.settings import Settings

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
KEYS_FILE = "keys.json"
SESSION_VERSION = "cs1"


class KeySettingError(ValueError):
    """A key setting that cannot be used, named."""


@dataclass(frozen=True)
class Keyring:
    """The payload keys (the first encrypts) and the subject HMAC key."""

    payload_keys: tuple[tuple[str, bytes], ...]
    subject_key: bytes

    def __post_init__(self) -> None:
        if not self.payload_keys:
            raise KeySettingError("PAYLOAD_KEYS: give at least one key")
        ids = [key_id for key_id, _ in self.payload_keys]
        if len(set(ids)) != len(ids):
            raise KeySettingError(f"PAYLOAD_KEYS: key ids repeat: {', '.join(ids)}")
        if len(self.subject_key) < KEY_BYTES:
            raise KeySettingError(f"SUBJECT_HASH_KEY: at least {KEY_BYTES} bytes, base64")

    @property
    def encrypting_id(self) -> str:
        return self.payload_keys[0][0]

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        return cls(((key_id, secrets.token_bytes(KEY_BYTES)),), secrets.token_bytes(KEY_BYTES))

    def subject_digests(self, identifiers: SubjectIdentifiers) -> list[str]:
        """What the subject search attribute holds: one keyed hash per identifier, so the
        Temporal visibility store never sees one, and anyone holding an identifier (and the
        key) finds the cases with `RectifySubjectDigest = '<digest>'`."""
        return [
            self.subject_digest(name, value)
            for name, value in identifiers.model_dump(exclude_none=True).items()
        ]

    def subject_digest(self, kind: str, value: str) -> str:
        text = f"{kind}={normalised(value)}"
        return hmac.new(self.subject_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def case_prefix(self, office: str, category: str, subject: str) -> str:
        """`EV-{hash}` of a detection route's cases (a generation number follows): keyed, so the
        workflow id reveals no identifier to anyone trying a list of them."""
        text = f"case-id|{office}|{category}|{subject}".encode()
        return "EV-" + hmac.new(self.subject_key, text, hashlib.sha256).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        """What a log line may say of the keys: ids and fingerprints (keyed hashes of a constant,
        never the keys), so an API and a worker with different keys are told apart at a glance."""
        return {
            "encrypting_key": self.encrypting_id,
            "key_fingerprints": {
                key_id: hmac.new(key, b"rectify key fingerprint", hashlib.sha256).hexdigest()[:12]
                for key_id, key in self.payload_keys
            },
        }

    def session_token(self, prefix: str, expires_at: int) -> str:
        """A sign-in that names an API key (by prefix) until `expires_at` (epoch seconds), signed:
        what the codec's cookie holds instead of the key itself."""
        body = f"{SESSION_VERSION}.{prefix}.{expires_at}"
        return f"{body}.{self._session_mac(body)}"

    def session_prefix(self, token: str, now: float) -> str | None:
        """The key prefix a session token signs, if it is ours and not expired; else None."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != SESSION_VERSION or not parts[2].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._session_mac(body)):
            return None
        return parts[1] if int(parts[2]) > now else None

    def _session_mac(self, body: str) -> str:
        # A key of its own, derived: the session's MAC never doubles as a subject's hash.
        key = hmac.new(self.subject_key, b"rectify codec session key", hashlib.sha256).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

    def payload_keys_text(self) -> str:
        """The PAYLOAD_KEYS value that gives these keys back."""
        return ",".join(f"{key_id}:{_b64(key)}" for key_id, key in self.payload_keys)

    def subject_key_text(self) -> str:
        return _b64(self.subject_key)

    def env(self) -> dict[str, str]:
        """The environment a child process needs to share these keys."""
        return {
            "PAYLOAD_KEYS": self.payload_keys_text(),
            "SUBJECT_HASH_KEY": self.subject_key_text(),
        }


def normalised(value: str) -> str:
    """An identifier as compared: compatibility forms folded (full-width letters and digits
    read as ASCII), case folded, outer blanks dropped."""
    return unicodedata.normalize("NFKC", value).casefold().strip()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode(what: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeySettingError(f"{what}: not base64") from None


def parse_payload_keys(text: str) -> tuple[tuple[str, bytes], ...]:
    """`id:base64,...` → ((id, 32 bytes), ...), refusing anything else by name (never the key)."""
    keys: list[tuple[str, bytes]] = []
    for number, item in enumerate(text.split(","), start=1):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise KeySettingError(
                f"PAYLOAD_KEYS: item {number} must read id:base64 (an id of letters, digits,"
                " '.', '_' or '-', at most 32)"
            )
        raw = _decode(f"PAYLOAD_KEYS: key {key_id!r}", encoded)
        if len(raw) != KEY_BYTES:
            raise KeySettingError(
                f"PAYLOAD_KEYS: key {key_id!r} is {len(raw)} bytes; AES-256 takes {KEY_BYTES}"
            )
        keys.append((key_id, raw))
    return tuple(keys)


def keyring_from_text(payload_keys: str, subject_hash_key: str) -> Keyring:
    return Keyring(parse_payload_keys(payload_keys), _decode("SUBJECT_HASH_KEY", subject_hash_key))


def load_keyring(settings: Settings) -> Keyring:
    """The keys from the settings; in development, what is missing comes from (or is generated
    once into) DATA_DIR/keys.json."""
    payload = settings.payload_keys.get_secret_value() if settings.payload_keys else None
    subject = settings.subject_hash_key.get_secret_value() if settings.subject_hash_key else None
    if payload is None or subject is None:
        if settings.rectify_env == "production":  # Settings refuses this already
            raise KeySettingError("RECTIFY_ENV=production needs PAYLOAD_KEYS and SUBJECT_HASH_KEY")
        stored = development_keys(settings.data_dir)
        payload = payload or stored.payload_keys_text()
        subject = subject or stored.subject_key_text()
    return keyring_from_text(payload, subject)


def _published(draft: Path, path: Path) -> bool:
    """Put the complete draft at `path` (a hard link: whole or not at all); False when another
    process's keys are there already."""
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    except OSError as exc:  # a file system without hard links
        raise KeySettingError(
            f"{path}: cannot be written ({exc.strerror}); set PAYLOAD_KEYS and SUBJECT_HASH_KEY"
        ) from None
    return True


def development_keys(data_dir: Path) -> Keyring:
    """DATA_DIR/keys.json, created 0600 (exclusively: two processes starting at once agree)."""
    path = data_dir / KEYS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = Keyring.generate()
        body = json.dumps(
            {
                "payload_keys": fresh.payload_keys_text(),
                "subject_hash_key": fresh.subject_key_text(),
                "note": "development keys of the payload codec; losing them loses every case",
            },
            indent=2,
        )
        draft = data_dir / f".{KEYS_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(body + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            if _published(draft, path):
                return fresh
        finally:
            draft.unlink()
        # Another process was first: read theirs.
    try:
        stored = json.loads(path.read_text())
        return keyring_from_text(stored["payload_keys"], stored["subject_hash_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeySettingError(
            f"{path}: not a keys file Rectify wrote ({type(exc).__name__})"
        ) from None
