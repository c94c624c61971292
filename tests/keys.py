"""The test suite's keys: fixed, so recorded histories replay; never a production key.

Importing this module (tests/conftest.py does) puts them in the environment, so every
`Settings()` a test builds, and every process a test starts, encrypts with the same keys as the
test's own Temporal clients and workers.
"""

from __future__ import annotations

import hashlib
import os

from wiring.codec import data_converter
from wiring.keys import Keyring

TEST_KEYRING = Keyring(
    (("test-1", hashlib.sha256(b"rectify test payload key 1").digest()),),
    hashlib.sha256(b"rectify test subject hash key").digest(),
)
CONVERTER = data_converter(TEST_KEYRING)

for _name, _value in TEST_KEYRING.env().items():
    os.environ[_name] = _value
