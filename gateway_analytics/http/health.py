"""``/healthz``, ``/readyz`` and ``/metrics``: what probes and scrapers read.

``/healthz`` answers 200 while the process runs. ``/readyz`` runs every
readiness check (Kafka reachable with the topic present, ClickHouse
reachable, migrations applied) and answers 503 naming the failing ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.migrations import applied_versions, load_migrations
from gateway_analytics.http.problems import ErrorBody
from gateway_analytics.shared.kafka import topic_partitions
from gateway_analytics.shared.metrics import render

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when its part is ready; raises, with the reason, when it is not."""

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"

_CHECK_TIMEOUT_S = 3.0

_Outcomes = Annotated[
    dict[str, str],
    Field(
        description="Each readiness check by name: ok, or why it failed.",
        examples=[{"kafka": "ok", "clickhouse": "ok", "migrations": "ok"}],
    ),
]


class Alive(BaseModel):
    """The body of ``/healthz``."""

    status: Literal["alive"]


class Ready(BaseModel):
    """The body of ``/readyz`` when every check passed."""

    status: Literal["ready"]
    checks: _Outcomes


class NotReady(ErrorBody):
    """The body of ``/readyz`` when a check failed: an error with every outcome."""

    checks: _Outcomes


def add_ops_routes(
    app: web.Application, *, checks: Mapping[str, ReadinessCheck]
) -> None:
    """Add the health, readiness and metrics routes to ``app``."""

    async def healthz(request: web.Request) -> web.Response:
        return _json(Alive(status="alive"))

    async def readyz(request: web.Request) -> web.Response:
        results = await asyncio.gather(*(_outcome(check) for check in checks.values()))
        outcomes = dict(zip(checks, results, strict=True))
        failing = [name for name, outcome in outcomes.items() if outcome != "ok"]
        if failing:
            return NotReady(
                error="not_ready",
                message=f"Not ready: {', '.join(failing)}.",
                checks=outcomes,
            ).as_response(503)
        return _json(Ready(status="ready", checks=outcomes))

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get(LIVENESS_PATH, healthz)
    app.router.add_get(READINESS_PATH, readyz)
    app.router.add_get(METRICS_PATH, metrics)


def _json(body: BaseModel) -> web.Response:
    return web.Response(text=body.model_dump_json(), content_type="application/json")


async def _outcome(check: ReadinessCheck) -> str:
    try:
        await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {_CHECK_TIMEOUT_S:.0f} s"
    except Exception as error:  # any failure at all means "not ready"
        return str(error) or type(error).__name__
    return "ok"


def readiness_checks(
    *, clickhouse: ClickHouse, bootstrap_servers: str, topic: str
) -> dict[str, ReadinessCheck]:
    """The checks of a process that uses Kafka and ClickHouse."""

    async def kafka() -> None:
        if not await topic_partitions(bootstrap_servers=bootstrap_servers, topic=topic):
            raise RuntimeError(f"topic {topic} is missing")

    async def clickhouse_query() -> None:
        await clickhouse.query("SELECT 1")

    async def migrations() -> None:
        pending = {m.version for m in load_migrations()} - await applied_versions(
            clickhouse
        )
        if pending:
            raise RuntimeError(f"migrations not applied: {sorted(pending)}")

    return {"kafka": kafka, "clickhouse": clickhouse_query, "migrations": migrations}
