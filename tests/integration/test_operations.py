"""Health, readiness, metrics, request ids and API keys, on the real app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.http.app import create_app
from gateway_analytics.http.health import readiness_checks
from gateway_analytics.shared.kafka import create_producer
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.shared.settings import Settings
from tests.conftest import TopicFactory
from tests.support import SEED_BATCH

INGEST_KEY = "ingest-key-1234567890"
QUERY_KEY = "query-key-0987654321"

Client = TestClient  # type: ignore[type-arg]
ClientFactory = Callable[..., Any]


@pytest.fixture
def serve(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> ClientFactory:
    """Serves the app with the given settings against real Kafka and ClickHouse."""

    @asynccontextmanager
    async def serving(
        *, topic: str | None = None, **settings: Any
    ) -> AsyncIterator[Client]:
        topic = topic or await topic_factory()
        producer = create_producer(bootstrap_servers=kafka.bootstrap_servers)
        await producer.start()
        app = create_app(
            settings=Settings(kafka_topic=topic, **settings),
            clickhouse=clickhouse,
            publisher=KafkaPublisher(producer=producer, topic=topic, timeout_s=10),
            checks=readiness_checks(
                clickhouse=clickhouse,
                bootstrap_servers=kafka.bootstrap_servers,
                topic=topic,
            ),
        )
        try:
            async with TestClient(TestServer(app)) as client:
                yield client
        finally:
            await producer.stop()

    return serving


async def test_health_and_readiness_report_each_part(serve: ClientFactory) -> None:
    """healthz says alive; readyz checks Kafka, ClickHouse and migrations."""
    async with serve() as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")

        assert health.status == 200
        assert ready.status == 200
        assert (await ready.json())["checks"] == {
            "kafka": "ok",
            "clickhouse": "ok",
            "migrations": "ok",
        }


async def test_readiness_names_the_failing_part(serve: ClientFactory) -> None:
    """A missing topic makes readyz answer 503 naming kafka, the rest still ok."""
    async with serve(topic="topic-that-was-never-created") as client:
        ready = await client.get("/readyz")

        assert ready.status == 503
        body = await ready.json()
        assert body["message"] == "Not ready: kafka."
        assert "missing" in body["checks"]["kafka"]
        assert body["checks"]["clickhouse"] == "ok"


async def test_metrics_count_requests_and_events(serve: ClientFactory) -> None:
    """After a POST the metrics page shows it by route and status, and its events."""
    async with serve() as client:
        await client.post("/api/analytics/events", json=SEED_BATCH)
        await client.post("/api/analytics/events", data=b"{")

        page = await (await client.get("/metrics")).text()

    assert (
        'analytics_http_requests_total{route="/api/analytics/events",status="202"}'
        in page
    )
    assert 'analytics_events_rejected_total{reason="malformed_json"}' in page
    assert "analytics_events_accepted_total" in page
    assert "analytics_kafka_produce_seconds_bucket" in page


async def test_every_response_carries_a_request_id(serve: ClientFactory) -> None:
    """A client's plain request id is echoed; otherwise one is made."""
    async with serve() as client:
        echoed = await client.get("/healthz", headers={"X-Request-Id": "gw-42.a_b"})
        replaced = await client.get(
            "/healthz", headers={"X-Request-Id": "bad id; drop"}
        )
        made = await client.get("/api/analytics/pods?window=year")

        assert echoed.headers["X-Request-Id"] == "gw-42.a_b"
        assert len(replaced.headers["X-Request-Id"]) == 32
        assert len(made.headers["X-Request-Id"]) == 32


async def test_api_keys_guard_their_own_kind_of_route(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """No key: 401; the other kind of key: 403; the right key: served."""
    caplog.set_level(logging.DEBUG)
    keys = {"ingest_api_keys": f"old-key, {INGEST_KEY}", "query_api_keys": QUERY_KEY}
    async with serve(**keys) as client:
        post = "/api/analytics/events"
        missing = await client.post(post, json=SEED_BATCH)
        wrong_kind = await client.post(
            post, json=SEED_BATCH, headers=_bearer(QUERY_KEY)
        )
        unknown = await client.post(post, json=SEED_BATCH, headers=_bearer("guess"))
        accepted = await client.post(post, json=SEED_BATCH, headers=_bearer(INGEST_KEY))
        query_denied = await client.get(
            "/api/analytics/pods", headers=_bearer(INGEST_KEY)
        )
        queried = await client.get("/api/analytics/pods", headers=_bearer(QUERY_KEY))
        probe = await client.get("/readyz")

        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert wrong_kind.status == 403
        assert unknown.status == 401
        assert accepted.status == 202
        assert query_denied.status == 403
        assert queried.status == 200
        assert probe.status == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert INGEST_KEY not in logged
    assert QUERY_KEY not in logged


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
