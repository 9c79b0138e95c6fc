"""The aiohttp application: routes, middleware and limits."""

from __future__ import annotations

from aiohttp import web

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity
from gateway_analytics.http.counts import counts_handler
from gateway_analytics.http.ingest import ingest_handler
from gateway_analytics.http.problems import error_middleware
from gateway_analytics.shared.publisher import EventPublisher
from gateway_analytics.shared.settings import Settings


def create_app(
    *, settings: Settings, clickhouse: ClickHouse, publisher: EventPublisher
) -> web.Application:
    """The API, serving from ``clickhouse`` and publishing through ``publisher``.

    The caller owns both and closes them after the application stops.
    """
    # The ingest handler enforces max_body_bytes itself with a clear 413;
    # aiohttp's own limit only guards the other routes.
    app = web.Application(
        middlewares=[error_middleware], client_max_size=settings.max_body_bytes
    )
    app.router.add_post(
        "/api/analytics/events",
        ingest_handler(
            publisher=publisher,
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
            retry_after_s=settings.retry_after_s,
        ),
    )
    for path, entity in (
        ("/api/analytics/pods", Entity.POD),
        ("/api/analytics/artifacts", Entity.ARTIFACT),
    ):
        app.router.add_get(
            path,
            counts_handler(
                clickhouse=clickhouse,
                entity=entity,
                retry_after_s=settings.retry_after_s,
            ),
        )
    return app
