"""The aiohttp application: routes, middleware and limits."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity
from gateway_analytics.http.access import access_middleware
from gateway_analytics.http.auth import Access, auth_middleware, parse_keys
from gateway_analytics.http.counts import counts_handler
from gateway_analytics.http.health import ReadinessCheck, add_ops_routes
from gateway_analytics.http.ingest import ingest_handler
from gateway_analytics.http.openapi import add_openapi_route, build_openapi
from gateway_analytics.http.problems import error_middleware
from gateway_analytics.shared.publisher import EventPublisher
from gateway_analytics.shared.settings import Settings

EVENTS_PATH = "/api/analytics/events"
COUNT_PATHS = {
    "/api/analytics/pods": Entity.POD,
    "/api/analytics/artifacts": Entity.ARTIFACT,
}


def create_app(
    *,
    settings: Settings,
    clickhouse: ClickHouse,
    publisher: EventPublisher,
    checks: Mapping[str, ReadinessCheck] | None = None,
) -> web.Application:
    """The API, serving from ``clickhouse`` and publishing through ``publisher``.

    The caller owns both and closes them after the application stops.
    ``checks`` are what ``/readyz`` runs; none means always ready.
    """
    # HEAD runs the GET handler, so it needs the same key.
    protected = {("POST", EVENTS_PATH): Access.INGEST} | {
        (method, path): Access.QUERY
        for path in COUNT_PATHS
        for method in ("GET", "HEAD")
    }
    # The ingest handler enforces max_body_bytes itself with a clear 413;
    # aiohttp's own limit only guards the other routes.
    app = web.Application(
        middlewares=[
            access_middleware,
            error_middleware,
            auth_middleware(
                ingest_keys=parse_keys(settings.ingest_api_keys.get_secret_value()),
                query_keys=parse_keys(settings.query_api_keys.get_secret_value()),
                routes=protected,
            ),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app.router.add_post(
        EVENTS_PATH,
        ingest_handler(
            publisher=publisher,
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
            retry_after_s=settings.retry_after_s,
        ),
    )
    for path, entity in COUNT_PATHS.items():
        app.router.add_get(
            path,
            counts_handler(
                clickhouse=clickhouse,
                entity=entity,
                retry_after_s=settings.retry_after_s,
            ),
        )
    add_ops_routes(app, checks=checks or {})
    add_openapi_route(
        app,
        build_openapi(
            events_path=EVENTS_PATH,
            count_paths=COUNT_PATHS,
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
        ),
    )
    return app
