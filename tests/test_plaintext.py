"""No subject's name or identifier reaches Temporal's storage in plain text (issue 9).

A Temporal dev server on a SQLite file (WAL), as `make run` starts it; the real worker and the
API in-process. A case is opened by POST /cases and one by a detection, both driven through
commands, a joining detection, a refused command and the timeline; then the raw database file,
its WAL and the history as the server holds it are searched for the subjects' names (UTF-8 and
JSON-escaped) and identifiers. The case ids are found there (the search reads the right bytes);
the personal data is not.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from tests.conftest import POLICIES, new_case_id
from tests.keys import TEST_KEYRING
from tests.test_api_events import event
from tests.test_api_integration import (
    FILING,
    INTERVIEW,
    INTERVIEW_RECORD,
    ORDER,
    REPORT,
    case_body,
    create_key,
)
from wiring.embedded import EmbeddedTemporal, free_port
from wiring.search_attributes import ensure_search_attributes
from wiring.settings import Settings
from wiring.temporal import connect_temporal
from worker.main import build_worker
from workflows import search

pytestmark = pytest.mark.integration

CANARY = uuid.uuid4().hex[:8]
NAME = f"Canary Plaintext Network {CANARY} Co"
CHINESE_NAME = f"金丝雀明文网络科技有限公司{CANARY}"
DOMAIN = f"canary-{CANARY}.example.cn"
ACCOUNT = f"canary-account-{CANARY}"
EVENT_DOMAIN = f"canary-event-{CANARY}.example.cn"


def needles() -> dict[str, bytes]:
    """Each piece of personal data, in every form a JSON payload could hold it."""
    forms: dict[str, bytes] = {}
    for text in (NAME, CHINESE_NAME, DOMAIN, ACCOUNT, EVENT_DOMAIN):
        forms[text] = text.encode()
        escaped = json.dumps(text)[1:-1].encode()  # \\u91d1... for the Chinese name
        if escaped != forms[text]:
            forms[f"{text} (JSON-escaped)"] = escaped
    forms["the Chinese name's first four characters"] = CHINESE_NAME[:4].encode()
    return forms


@asynccontextmanager
async def engine(tmp_path: Path, pg_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[Any]:
    temporal = EmbeddedTemporal(tmp_path / "temporal.db", free_port(), free_port())
    temporal.start()
    try:
        client = await connect_temporal(temporal.address, keyring=TEST_KEYRING, wait_seconds=30)
        await ensure_search_attributes(client, "default", search.ALL)
        queue = f"plain-{uuid.uuid4().hex[:8]}"
        app = create_app(
            Settings(
                _env_file=None,
                database_url=pg_dsn,
                temporal_address=temporal.address,
                task_queue=queue,
                detection_signal_interval_s=0.2,
            )
        )
        headers = {"Authorization": f"Bearer {await create_key(pg_dsn, 'admin')}"}
        async with (
            build_worker(client, pool, queue, POLICIES),
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://rectify", headers=headers
            ) as api,
        ):
            yield temporal, api
    finally:
        temporal.stop()


async def ok(api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = await api.post(path, json=body)
    assert answer.status_code == status, f"{path}: {answer.text}"
    return answer.json()


async def drive_to_closed(api: httpx.AsyncClient, base: str, actor: str) -> None:
    await ok(api, f"{base}/filing-decision", FILING | {"actor": actor})
    at = datetime.now(UTC) + timedelta(seconds=1)
    interview = INTERVIEW | {"actor": actor, "scheduled_for": at.isoformat()}
    await ok(api, f"{base}/interview/schedule", interview)
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.3)
    await ok(api, f"{base}/interview/record", INTERVIEW_RECORD | {"actor": actor})
    await ok(api, f"{base}/rectification-order", ORDER | {"actor": actor})
    # A refused command: its failure (message included) is stored too.
    refused = await api.post(f"{base}/rectification-order", json=ORDER | {"actor": actor})
    assert refused.status_code == 409
    await ok(api, f"{base}/rectification-report", REPORT)
    await ok(api, f"{base}/verification", {"actor": actor, "passed": True, "findings": "ok"})


@pytest.mark.timeout(240)
async def test_no_name_or_identifier_in_temporals_files_or_history(
    tmp_path: Path, pg_dsn: str, pool: asyncpg.Pool
) -> None:
    case_id = new_case_id()
    subject = {
        "kind": "platform",
        "name": f"{NAME} / {CHINESE_NAME}",
        "identifiers": {"domain": DOMAIN, "account_id": ACCOUNT},
    }
    async with engine(tmp_path, pg_dsn, pool) as (temporal, api):
        await ok(api, "/cases", case_body(case_id, subject=subject), 201)
        await drive_to_closed(api, f"/cases/{case_id}", "officer.chen")

        detected = event(domain=EVENT_DOMAIN)
        detected["subject"]["name"] = CHINESE_NAME
        opened = await ok(api, "/events", detected, 201)
        joined = await ok(api, "/events", {**detected, "idempotency_key": f"j-{CANARY}"}, 200)
        assert joined["case_id"] == opened["case_id"]
        event_case = opened["case_id"]
        await asyncio.sleep(1.0)  # the coalesced signal of the joining detection

        timeline = (await api.get(f"/cases/{case_id}/history")).json()
        assert timeline["timeline"], timeline
        # The API reads the encrypted history back: the opening's subject is in the timeline.
        assert NAME in json.dumps(timeline, ensure_ascii=False)

        raw = await Client.connect(temporal.address)  # no codec: what the server stores
        stored = {
            workflow_id: (await raw.get_workflow_handle(workflow_id).fetch_history()).to_json()
            for workflow_id in (f"case:{case_id}", f"case:{event_case}")
        }

        files = {path.name: path.read_bytes() for path in temporal.files()[:2] if path.exists()}
        assert files, "the SQLite file and its WAL"
        everything = b"".join(files.values())
        assert case_id.encode() in everything, "the search reads the server's own bytes"

        found = [
            f"{what} in {where}"
            for what, needle in needles().items()
            for where, haystack in [*files.items(), *((k, v.encode()) for k, v in stored.items())]
            if needle in haystack
        ]
        print(
            f"plaintext search: {len(needles())} forms of 5 personal data items in"
            f" {', '.join(f'{n} ({len(b):,} bytes)' for n, b in files.items())} and"
            f" {len(stored)} histories ({sum(map(len, stored.values())):,} bytes): "
            f"{len(found)} found"
        )
        assert not found, found
