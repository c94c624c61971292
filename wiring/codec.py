"""The payload codec: every payload Rectify hands Temporal is AES-256-GCM ciphertext.

Workflow inputs and results, updates, signals, queries, activity inputs and results, memos and
failure details pass through `EncryptionCodec` on their way to the server; failure messages and
stack traces move into the failure's encoded attributes first (the SDK's
`DefaultFailureConverterWithEncodedAttributes`), so they are encrypted too. Search attributes are
not payloads the codec sees: the server must read them, so they hold no personal data
(workflows/search.py keeps a keyed hash of the subject's identifiers, never the identifiers).

Each encrypted payload carries `encoding: binary/encrypted` and the id of the key that encrypted
it; the plaintext is the whole original payload (metadata and data), authenticated with the key id
as associated data. Decoding passes through payloads that are not encrypted (histories recorded
before the codec, and the Replayer's fixtures), and refuses, naming the key id, a payload whose
key is not in the keyring or whose ciphertext was altered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from wiring.keys import Keyring

M = TypeVar("M", bound=Message)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16


class UndecryptablePayload(ValueError):
    """A payload this keyring cannot open: its key is unknown, or it was altered."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self._encrypting_id = keyring.encrypting_id
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.payload_keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._encrypting_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._encrypting_id].encrypt(
            nonce, payload.SerializeToString(), key_id
        )
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID, b"")
        key_id = raw_id.decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._ciphers)
            raise UndecryptablePayload(
                f"payload encrypted with key {key_id!r}, which PAYLOAD_KEYS does not hold"
                f" (it holds {known})"
            )
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise UndecryptablePayload(f"payload under key {key_id!r} is too short to be ours")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], raw_id)
        except InvalidTag:
            raise UndecryptablePayload(
                f"payload under key {key_id!r} does not decrypt: altered, or another key"
            ) from None
        return Payload.FromString(plain)


def data_converter(keyring: Keyring) -> DataConverter:
    """The pydantic converter with the codec and encrypted failure messages: what every client,
    worker and replayer of Rectify uses."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def decrypt_message(message: Message, codec: EncryptionCodec) -> None:
    """Decrypt, in place, every payload in a proto message (a history, an event) and put each
    failure's message and stack trace back where a reader of the history looks for them. A
    payload this keyring cannot open (a key no longer held) is left as it is: a history reader
    shows what it can, never fails on one payload."""
    if isinstance(message, Payload):
        with contextlib.suppress(UndecryptablePayload):
            message.CopyFrom(codec.decrypt(message))
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            entries = (
                value.values() if field.message_type.fields_by_name["value"].message_type else ()
            )
            for entry in entries:
                decrypt_message(entry, codec)
        elif isinstance(value, Message):
            decrypt_message(value, codec)
        else:  # a repeated message field
            for item in value:
                decrypt_message(item, codec)
    if isinstance(message, Failure) and message.HasField("encoded_attributes"):
        _restore_failure_text(message)


def _restore_failure_text(failure: Failure) -> None:
    try:
        attributes = json.loads(failure.encoded_attributes.data)
    except ValueError:
        return  # still ciphertext (under a key this keyring does not hold), or not ours
    if isinstance(attributes, dict):
        failure.message = str(attributes.get("message", failure.message))
        failure.stack_trace = str(attributes.get("stack_trace", failure.stack_trace))


def decrypt_with(client_converter: DataConverter, message: M) -> M:
    """`decrypt_message` with the codec a client was connected with (none: left as it is).
    For the history readers: what `fetch_history` returns is what the server stores."""
    codec = client_converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        decrypt_message(message, codec)
    return message
