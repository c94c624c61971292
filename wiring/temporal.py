"""The Temporal client every process uses: the pydantic data converter with the payload codec."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.service import RPCError

from wiring.codec import data_converter
from wiring.keys import Keyring


async def connect_temporal(
    address: str, namespace: str = "default", *, keyring: Keyring, wait_seconds: float = 0.0
) -> Client:
    """Connect with Rectify's converter (wiring/codec.py), retrying for up to `wait_seconds`
    while the server starts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    converter = data_converter(keyring)
    while True:
        try:
            return await Client.connect(address, namespace=namespace, data_converter=converter)
        except (RuntimeError, RPCError):
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)


def workflow_ui_url(ui_base: str | None, namespace: str, workflow_id: str) -> str | None:
    """Link to a workflow in the Temporal Web UI (None when no UI is known)."""
    if not ui_base:
        return None
    from urllib.parse import quote

    return f"{ui_base.rstrip('/')}/namespaces/{quote(namespace)}/workflows/{quote(workflow_id)}"
