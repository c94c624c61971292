"""The codec endpoint: the Temporal Web UI shows decoded payloads to supervisors and admins.

Temporal's remote codec protocol: `POST /codec/decode` and `POST /codec/encode` take and answer
`{"payloads": [...]}`, each payload in the protobuf JSON form (`metadata` values and `data` in
base64). They run the same codec as every Rectify process (wiring/codec.py), so whoever may call
them reads every case's personal data: supervisors and admins only.

The Web UI cannot add an API key to its calls, so a supervisor signs in once at `GET /codec`
(this API's page): `POST /codec/session` with the key sets an HttpOnly, SameSite=Strict cookie
for the codec's paths only, which the UI's calls carry when its codec setting includes
cross-origin credentials. The cookie holds a signed session (`Keyring.session_token`: the key's
prefix and an expiry, never the key), checked on every call together with the key's record, so
an expired session or a revoked key ends it.
CORS answers only the origins in `CODEC_CORS_ORIGINS` (the UI's), and only on /codec.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api import problems
from api.auth import CODEC, CODEC_COOKIE, NO_KEY, AccessRoute
from api.deps import AppSettings, Keys
from api.problems import Problem
from wiring.api_keys import ApiKey
from wiring.codec import EncryptionCodec, UndecryptablePayload

log = structlog.get_logger(__name__)

PREFIX = "/codec"
SESSION_HOURS = 8
MAX_PAYLOADS = 1000
# A Temporal payload is at most 2 MB; in base64 inside JSON, a third more, with room to spare.
MAX_BODY_BYTES = 4 * 1024 * 1024
PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

router = APIRouter(prefix=PREFIX, tags=["codec"], route_class=AccessRoute)


class WirePayload(BaseModel):
    """A payload as the remote codec protocol carries it (protobuf JSON)."""

    metadata: dict[str, str] = Field(default_factory=dict, description="values in base64")
    data: str = Field("", description="base64")


class WirePayloads(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "payloads": [
                        {
                            "metadata": {"encoding": "anNvbi9wbGFpbg=="},  # json/plain
                            "data": "eyJzdGFnZSI6ImZpbGVkIn0=",  # {"stage":"filed"}
                        }
                    ]
                }
            ]
        }
    )

    payloads: list[WirePayload] = Field(max_length=MAX_PAYLOADS)


class CodecSession(BaseModel):
    api_key: str = Field(description="the prefix of the key signed in")
    role: str
    expires_at: datetime


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Problem.invalid([(where, "not base64")]) from None


def _from_wire(body: WirePayloads) -> list[Payload]:
    return [
        Payload(
            metadata={
                name: _b64(value, f"body.payloads.{number}.metadata.{name}")
                for name, value in item.metadata.items()
            },
            data=_b64(item.data, f"body.payloads.{number}.data"),
        )
        for number, item in enumerate(body.payloads)
    ]


def _to_wire(payloads: list[Payload]) -> WirePayloads:
    return WirePayloads(
        payloads=[
            WirePayload(
                metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                data=base64.b64encode(p.data).decode(),
            )
            for p in payloads
        ]
    )


def _codec(request: Request) -> EncryptionCodec:
    codec: EncryptionCodec = request.app.state.codec
    return codec


Codec = Annotated[EncryptionCodec, Depends(_codec)]


@router.post(
    "/decode",
    response_model=WirePayloads,
    responses=problems.responses((422, "a payload is not base64")),
    summary="Decrypt payloads for the Temporal Web UI (remote codec protocol)",
)
async def decode(
    body: WirePayloads, codec: Codec, caller: Annotated[ApiKey, Depends(CODEC)]
) -> WirePayloads:
    """Each payload decrypted; one this keyring cannot open (a key retired from PAYLOAD_KEYS,
    an altered one) comes back as it was, so the UI still shows the others."""
    decoded, refused = [], []
    for number, payload in enumerate(_from_wire(body)):
        try:
            decoded.append(codec.decrypt(payload))
        except UndecryptablePayload as exc:
            decoded.append(payload)
            refused.append(f"{number}: {exc}")
    if refused:
        log.warning("payloads not decrypted", payloads=refused, api_key=caller.prefix)
    log.info("payloads decoded", count=len(decoded) - len(refused), api_key=caller.prefix)
    return _to_wire(decoded)


@router.post(
    "/encode",
    response_model=WirePayloads,
    responses=problems.responses((422, "a payload is not base64")),
    summary="Encrypt payloads for the Temporal Web UI (remote codec protocol)",
)
async def encode(
    body: WirePayloads, codec: Codec, caller: Annotated[ApiKey, Depends(CODEC)]
) -> WirePayloads:
    encoded = await codec.encode(_from_wire(body))
    log.info("payloads encoded", count=len(encoded), api_key=caller.prefix)
    return _to_wire(encoded)


@router.get(
    "",
    response_class=HTMLResponse,
    dependencies=[Depends(NO_KEY)],
    summary="The codec sign-in page: decoded payloads in the Temporal Web UI",
)
async def sign_in_page(request: Request, settings: AppSettings) -> HTMLResponse:
    page = PAGES.get_template("codec.html").render(
        endpoint=str(request.url_for("decode")).removesuffix("/decode"),
        session=request.url_for("start_session").path,
        ui_url=settings.temporal_ui_url,
        hours=SESSION_HOURS,
    )
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
        },
    )


@router.post(
    "/session",
    response_model=CodecSession,
    summary="Sign this browser in to the codec (the key, in an HttpOnly cookie)",
)
async def start_session(
    request: Request,
    response: Response,
    settings: AppSettings,
    keyring: Keys,
    caller: Annotated[ApiKey, Depends(CODEC)],
) -> CodecSession:
    expires_at = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
    response.set_cookie(
        CODEC_COOKIE,
        # Signed, naming the key by prefix until it expires: never the key itself, and checked
        # here (its expiry too), not only by the browser. Signed in by the cookie: renewed.
        keyring.session_token(caller.prefix, int(expires_at.timestamp())),
        max_age=SESSION_HOURS * 3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        # Behind a TLS proxy the request itself is plain http: production is always https.
        secure=settings.rectify_env == "production" or request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    log.info("codec session started", api_key=caller.prefix)
    return CodecSession(api_key=caller.prefix, role=caller.role.value, expires_at=expires_at)


@router.delete(
    "/session",
    status_code=204,
    dependencies=[Depends(NO_KEY)],
    summary="Sign this browser out of the codec",
)
async def end_session(response: Response) -> Response:
    response.delete_cookie(CODEC_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    response.status_code = 204
    return response


class CodecCors:
    """CORS for the codec's paths only, for the Web UI's origins, with credentials (the
    sign-in cookie). Every other path answers no CORS at all."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=[
                "content-type",
                "x-namespace",
                "authorization",
                "authorization-extras",
                "x-api-key",
            ],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
