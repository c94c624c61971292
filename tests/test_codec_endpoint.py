"""The codec endpoint (api/routes/codec.py): the Temporal Web UI's decoded payloads, for
supervisors and admins only, through a key or the sign-in cookie, with CORS for the UI's origin
only; and the registry's subject filter gives the visibility query of the subject's hashes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import asyncpg
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import new_case_id
from tests.keys import TEST_KEYRING
from tests.test_api_integration import api_client, case_body, create_key
from wiring.api_keys import ApiKeyRepository
from wiring.codec import EncryptionCodec

pytestmark = pytest.mark.integration

UI = "http://localhost:8233"
CODEC = EncryptionCodec(TEST_KEYRING)


def wire(payload: Payload) -> dict[str, Any]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def sealed(text: bytes) -> dict[str, Any]:
    return wire(CODEC.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=text)))


async def test_a_supervisor_decodes_what_the_worker_encrypted(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    async with api_client(dev_env, pg_dsn, task_queue, role="supervisor") as api:
        answer = await api.post("/codec/decode", json={"payloads": [sealed(b'"Example News"')]})
        assert answer.status_code == 200, answer.text
        [payload] = answer.json()["payloads"]
        assert base64.b64decode(payload["data"]) == b'"Example News"'
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"

        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": ""}
        encoded = await api.post("/codec/encode", json={"payloads": [plain]})
        assert encoded.status_code == 200
        [back] = encoded.json()["payloads"]
        assert base64.b64decode(back["metadata"]["encoding"]) == b"binary/encrypted"


@pytest.mark.parametrize(
    ("role", "office", "status"),
    [(None, None, 401), ("officer", "beijing", 403), ("supervisor", "beijing", 403)],
)
async def test_only_supervisors_and_admins_of_every_office_may_decode(
    dev_env: WorkflowEnvironment,
    pg_dsn: str,
    task_queue: str,
    role: str | None,
    office: str | None,
    status: int,
) -> None:
    """A payload names no office: a key bound to one office may not read every office's."""
    async with api_client(dev_env, pg_dsn, task_queue, role=role, office=office) as api:
        answer = await api.post("/codec/decode", json={"payloads": [sealed(b"1")]})
        assert answer.status_code == status, answer.text
        assert "payloads" not in answer.json()


async def test_bad_payloads_are_refused_naming_the_problem(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    async with api_client(dev_env, pg_dsn, task_queue, role="admin") as api:
        answer = await api.post("/codec/decode", json={"payloads": [{"data": "not base64!"}]})
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == "body.payloads.0.data"

        # One payload this keyring cannot open comes back as it was; the others decrypt.
        stranger = EncryptionCodec(type(TEST_KEYRING).generate("elsewhere"))
        foreign = wire(stranger.encrypt(Payload(data=b"x")))
        short = {**foreign, "data": base64.b64encode(b"tiny").decode()}
        answer = await api.post("/codec/decode", json={"payloads": [sealed(b"1"), foreign, short]})
        assert answer.status_code == 200, answer.text
        first, second, third = answer.json()["payloads"]
        assert base64.b64decode(first["data"]) == b"1"
        assert (second, third) == (foreign, short)


async def test_the_sign_in_cookie_lets_the_web_ui_decode_until_signed_out(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    async with api_client(dev_env, pg_dsn, task_queue, role=None) as api:
        page = await api.get("/codec")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "http://rectify/codec" in page.text  # the endpoint to give the Web UI

        officer = await create_key(pg_dsn, "officer", "beijing")
        refused = await api.post("/codec/session", headers={"Authorization": f"Bearer {officer}"})
        assert refused.status_code == 403
        assert "set-cookie" not in refused.headers

        key = await create_key(pg_dsn, "supervisor")
        # The scheme's case does not matter (RFC 7235); the cookie holds the key alone.
        signed_in = await api.post("/codec/session", headers={"Authorization": f"bearer {key}"})
        assert signed_in.status_code == 200, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/codec", "Max-Age=28800"):
            assert attribute.lower() in cookie.lower(), cookie
        assert key not in cookie and key.split("_")[2] not in cookie  # a signed session only
        assert signed_in.json()["role"] == "supervisor"

        # The Web UI's call: no key header, the cookie only; or its own access token beside it.
        answer = await api.post("/codec/decode", json={"payloads": [sealed(b"2")]})
        assert answer.status_code == 200, answer.text
        oidc = {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"}
        answer = await api.post("/codec/decode", json={"payloads": []}, headers=oidc)
        assert answer.status_code == 200, answer.text

        # Altered, the session is refused; so is a revoked key's, on its very next call.
        token = api.cookies["rectify_codec_key"]
        api.cookies.set("rectify_codec_key", token[:-1] + ("0" if token[-1] != "0" else "1"))
        altered = await api.post("/codec/decode", json={"payloads": []})
        assert altered.status_code == 401 and "sign in again" in altered.json()["detail"]
        api.cookies.set("rectify_codec_key", token)
        conn = await asyncpg.connect(pg_dsn)
        try:
            await ApiKeyRepository(conn).revoke(key.split("_")[1])
        finally:
            await conn.close()
        revoked = await api.post("/codec/decode", json={"payloads": []})
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]

        out = await api.delete("/codec/session")
        assert out.status_code == 204
        api.cookies.clear()  # what the browser does with the expired cookie it was sent
        assert (
            'rectify_codec_key=""' in out.headers["set-cookie"]
            or "Max-Age=0" in (out.headers["set-cookie"])
        )
        assert (await api.post("/codec/decode", json={"payloads": []})).status_code == 401


async def test_cors_answers_the_web_uis_origin_on_the_codec_only(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    async with api_client(
        dev_env, pg_dsn, task_queue, role="supervisor", codec_cors_origins=f"{UI}, https://ui.x"
    ) as api:
        asked = {
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        }
        preflight = await api.options("/codec/decode", headers=asked)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == UI
        assert preflight.headers["access-control-allow-credentials"] == "true"

        elsewhere = await api.options("/codec/decode", headers={**asked, "Origin": "http://evil"})
        assert "access-control-allow-origin" not in elsewhere.headers

        answer = await api.post(
            "/codec/decode", json={"payloads": []}, headers={"Origin": UI, "X-Namespace": "default"}
        )
        assert answer.headers["access-control-allow-origin"] == UI

        other = await api.get("/cases", headers={"Origin": UI})
        assert "access-control-allow-origin" not in other.headers


async def test_the_subject_filter_gives_the_web_uis_query_of_its_hashes(
    dev_env: WorkflowEnvironment, dev_worker: Worker, pg_dsn: str, task_queue: str
) -> None:
    """The visibility store holds only keyed hashes of identifiers: the registry computes the
    query that finds the subject's cases there, and it does find the case."""
    body = case_body(new_case_id())
    package = body["subject"]["identifiers"]["app_package"]
    async with api_client(dev_env, pg_dsn, task_queue, role="admin") as api:
        assert (await api.post("/cases", json=body)).status_code == 201
        page = await api.get("/cases", params={"subject": package})
        assert page.status_code == 200
        query = page.json()["temporal_query"]
        assert query.startswith("RectifySubjectDigest IN (") and package not in query
        assert (await api.get("/cases")).json()["temporal_query"] is None
    workflow_id = f"case:{body['case_id']}"
    assert await listed(dev_env, query, workflow_id), f"{query} does not find {workflow_id}"
    described = await dev_env.client.get_workflow_handle(workflow_id).describe()
    attributes = described.typed_search_attributes
    assert attributes and all(package not in str(pair.value) for pair in attributes)
    assert body["subject"]["name"] not in str(list(attributes))


async def listed(env: WorkflowEnvironment, query: str, workflow_id: str) -> bool:
    """Whether visibility lists the workflow for the query (it is eventually consistent)."""
    for _ in range(40):
        if workflow_id in [e.id async for e in env.client.list_workflows(query)]:
            return True
        await asyncio.sleep(0.25)
    return False


async def test_a_whole_large_payload_is_decoded_not_refused_as_too_large(
    dev_env: WorkflowEnvironment, pg_dsn: str, task_queue: str
) -> None:
    """Temporal takes payloads up to 2 MB: the codec takes them (base64 in JSON) past the API's
    1 MiB body limit, which still holds everywhere else."""
    big = b'"' + b"x" * 1_500_000 + b'"'
    async with api_client(dev_env, pg_dsn, task_queue, role="admin") as api:
        answer = await api.post("/codec/decode", json={"payloads": [sealed(big)]})
        assert answer.status_code == 200, answer.text[:200]
        assert base64.b64decode(answer.json()["payloads"][0]["data"]) == big
        too_large = await api.post("/cases", content=b"{" + b" " * 1_100_000 + b"}")
        assert too_large.status_code == 413
