"""The payload codec and its keys (wiring/codec.py, wiring/keys.py): AES-256-GCM on every payload,
the key id in the metadata, old keys still decrypt, bad keys refused by name; the subject's
search attribute is a keyed hash."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.exceptions import ApplicationError

from domain.models import SubjectIdentifiers
from tests.conftest import open_case_input
from wiring.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    UndecryptablePayload,
    data_converter,
    decrypt_message,
)
from wiring.keys import (
    Keyring,
    KeySettingError,
    development_keys,
    keyring_from_text,
    load_keyring,
    parse_payload_keys,
)
from wiring.settings import Settings

SUBJECT_NAME = "Shenzhen Example Network Technology Co., Ltd."


def key_text(key_id: str, size: int = 32) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(size)).decode()}"


async def test_every_payload_is_ciphertext_and_comes_back() -> None:
    converter = data_converter(Keyring.generate())
    opened = open_case_input(
        subject={"kind": "website", "name": SUBJECT_NAME, "identifiers": {"domain": "example.cn"}}
    )
    [payload] = await converter.encode([opened])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == b"k1"
    assert SUBJECT_NAME.encode() not in payload.SerializeToString()
    assert b"example.cn" not in payload.SerializeToString()
    [back] = await converter.decode([payload], [type(opened)])
    assert back == opened


async def test_the_same_value_encrypts_differently_each_time() -> None:
    codec = EncryptionCodec(Keyring.generate())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec.encode([plain, plain])
    assert first.data != second.data  # a fresh nonce per payload


async def test_rotation_old_keys_decrypt_the_new_one_encrypts() -> None:
    old = Keyring(parse_payload_keys(key_text("2026-q3")), os.urandom(32))
    sealed = EncryptionCodec(old).encrypt(Payload(data=b"kept for years"))
    rotated = Keyring(
        parse_payload_keys(f"{key_text('2026-q4')},{old.payload_keys_text()}"), old.subject_key
    )
    codec = EncryptionCodec(rotated)
    assert codec.decrypt(sealed).data == b"kept for years"
    assert codec.encrypt(Payload(data=b"new")).metadata[KEY_ID] == b"2026-q4"


def test_a_payload_under_an_unknown_key_or_altered_is_refused_by_name() -> None:
    sealed = EncryptionCodec(Keyring.generate("gone")).encrypt(Payload(data=b"x"))
    stranger = EncryptionCodec(Keyring.generate("k1"))
    with pytest.raises(UndecryptablePayload, match="key 'gone', which PAYLOAD_KEYS does not hold"):
        stranger.decrypt(sealed)
    same = Keyring.generate("k1")
    codec = EncryptionCodec(same)
    tampered = codec.encrypt(Payload(data=b"x"))
    tampered.data = tampered.data[:-1] + bytes([tampered.data[-1] ^ 1])
    with pytest.raises(UndecryptablePayload, match="altered"):
        codec.decrypt(tampered)


def test_plaintext_payloads_pass_through_histories_before_the_codec() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a":1}')
    assert EncryptionCodec(Keyring.generate()).decrypt(plain) == plain


async def test_failure_messages_are_encrypted_and_restored_for_history_readers() -> None:
    keyring = Keyring.generate()
    converter = data_converter(keyring)
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"refused for {SUBJECT_NAME}"), failure)
    assert SUBJECT_NAME not in failure.SerializeToString().decode("latin-1")
    event = HistoryEvent()
    event.workflow_execution_failed_event_attributes.failure.CopyFrom(failure)
    decrypt_message(event, EncryptionCodec(keyring))
    restored = event.workflow_execution_failed_event_attributes.failure
    assert restored.message == f"refused for {SUBJECT_NAME}"
    assert isinstance(restored.application_failure_info, ApplicationFailureInfo)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "item 1 must read id:base64"),
        ("k1", "item 1 must read id:base64"),
        ("k1:not base64!", "key 'k1': not base64"),
        (key_text("k1", 16), "key 'k1' is 16 bytes; AES-256 takes 32"),
        (f"{key_text('k1')},{key_text('k1')}", "key ids repeat"),
        (f"{key_text('k1')},bad id:AAAA", "item 2 must read id:base64"),
    ],
)
def test_bad_payload_keys_are_refused_naming_the_problem(text: str, named: str) -> None:
    with pytest.raises(KeySettingError, match=named) as caught:
        keyring_from_text(text, base64.b64encode(os.urandom(32)).decode())
    secret = text.partition(":")[2].partition(",")[0]
    if len(secret) > 16:  # a key's material never reaches an error message
        assert secret not in str(caught.value)


def test_a_short_subject_hash_key_is_refused() -> None:
    with pytest.raises(KeySettingError, match="SUBJECT_HASH_KEY: at least 32 bytes"):
        keyring_from_text(key_text("k1"), base64.b64encode(b"short").decode())


def test_production_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("SUBJECT_HASH_KEY", raising=False)
    with pytest.raises(ValueError, match="PAYLOAD_KEYS, SUBJECT_HASH_KEY"):
        Settings(
            _env_file=None,
            rectify_env="production",
            database_url="postgresql://u:p@db/rectify",
            temporal_address="temporal:7233",
        )


def test_development_keys_are_made_once_private_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("SUBJECT_HASH_KEY", raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    first = load_keyring(settings)
    path = tmp_path / "data" / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(settings) == first  # the API, the worker and the CLI agree
    assert development_keys(tmp_path / "data") == first
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no draft left behind
    path.write_text(json.dumps({"payload_keys": "k1"}))
    with pytest.raises(KeySettingError, match="not a keys file"):
        load_keyring(settings)


def test_subject_digests_are_keyed_normalised_and_reveal_nothing() -> None:
    keyring = Keyring.generate()
    # A full-width S, and a trailing blank.
    identifiers = SubjectIdentifiers(domain="example.cn", account_id="\uff33hop-01 ")
    digests = keyring.subject_digests(identifiers)
    assert len(digests) == 2 and all(len(d) == 32 for d in digests)
    assert keyring.subject_digest("account_id", "shop-01") in digests  # NFKC, case, blanks
    assert keyring.subject_digest("domain", "EXAMPLE.cn") in digests
    assert not any("example" in d for d in digests)
    other = Keyring.generate()
    assert set(other.subject_digests(identifiers)).isdisjoint(digests)  # keyed, not guessable


def test_a_codec_session_is_signed_expires_and_names_only_the_key_prefix() -> None:
    keyring = Keyring.generate()
    token = keyring.session_token("0123456789ab", expires_at=2_000)
    assert keyring.session_prefix(token, now=1_999) == "0123456789ab"
    assert keyring.session_prefix(token, now=2_000) is None  # expired: checked here
    body, _, mac = token.rpartition(".")
    assert keyring.session_prefix(f"{body}.{'0' * len(mac)}", now=1) is None
    assert keyring.session_prefix(token.replace("2000", "9999"), now=1) is None
    assert Keyring.generate().session_prefix(token, now=1) is None  # another server's keys
    assert keyring.session_prefix("rk_0123456789ab_secret", now=1) is None
