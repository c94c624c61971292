"""Make sure the custom search attributes a workflow upserts exist in the namespace.

A workflow that upserts an undefined search attribute fails its workflow task in a loop, so the
worker registers them before it polls. Adding an attribute that exists is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger(__name__)


async def ensure_search_attributes(
    client: Client, namespace: str, keys: Sequence[SearchAttributeKey[Any]]
) -> list[str]:
    """Register the missing ones; return their names."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as exc:
        # The time-skipping test server can add search attributes but not list them.
        if exc.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in keys
        if key.name not in known
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise
        log.info("search attributes registered", names=sorted(missing))
    return sorted(missing)
