"""The HTTP app: FastAPI with a lifespan that owns the asyncpg pool and the Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from api.admission import Admission
from api.auth import check_access_rules
from api.detection_news import DetectionNews
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.problems import install_problem_handlers
from api.routes import (
    campaigns,
    cases,
    codec,
    commands,
    detections,
    events,
    health,
    history,
    operator,
    registry,
    stats,
)
from wiring.codec import EncryptionCodec
from wiring.db import create_pool
from wiring.keys import load_keyring
from wiring.settings import Settings, get_settings
from wiring.temporal import connect_temporal

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.keyring = load_keyring(settings)
        app.state.codec = EncryptionCodec(app.state.keyring)
        log.info("payload codec ready", **app.state.keyring.describe())
        app.state.pool = await create_pool(
            settings.require_database_url(),
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            command_timeout_s=settings.db_command_timeout_s,
            acquire_timeout_s=settings.db_acquire_timeout_s,
        )
        try:
            app.state.temporal = await connect_temporal(
                settings.require_temporal_address(),
                settings.temporal_namespace,
                keyring=app.state.keyring,
                wait_seconds=30,
            )
            app.state.admission = Admission.from_settings(app.state.temporal, settings)
            intake = events.Intake(app.state.pool, settings, app.state.keyring)
            client = app.state.temporal
            intake.news = DetectionNews(
                client,
                intake.inbox,
                settings.detection_signal_interval_s,
                heal=lambda case_id: events.heal_case(client, settings, intake, case_id),
            )
            app.state.intake = intake
            log.info("api ready", task_queue=settings.task_queue)
            yield
            await app.state.admission.close()
            await app.state.intake.news.close()
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="Rectify",
        version="0.1.0",
        summary="Durable workflows for internet-enforcement cases",
        lifespan=lifespan,
    )
    install_problem_handlers(app)

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api_max_body_bytes,
        larger={codec.PREFIX + "/": codec.MAX_BODY_BYTES},
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(cases.router)
    app.include_router(commands.router)
    app.include_router(history.router)
    app.include_router(events.router)
    app.include_router(detections.router)
    app.include_router(campaigns.router)
    app.include_router(stats.router)
    app.include_router(operator.router)
    app.include_router(codec.router)
    # Outermost: answers preflights.
    app.add_middleware(codec.CodecCors, origins=settings.codec_origins())
    check_access_rules(app)  # every route states who may call it
    return app
