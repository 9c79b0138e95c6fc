"""POST /api/analytics/events against a real broker: 202 means on the topic."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import DefaultPartitioner

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.http.app import create_app
from gateway_analytics.shared.kafka import (
    create_producer,
    ensure_topic,
    stop_producer,
    topic_partitions,
)
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.shared.settings import Settings
from tests.conftest import KAFKA_CACHE_DIR, TopicFactory
from tests.support import SEED_BATCH, SEED_POD, read_events, topic_size

MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS = 50
EVENTS_PATH = "/api/analytics/events"


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    bootstrap_servers: str
    topic: str


async def _serve(
    *, bootstrap_servers: str, topic: str, clickhouse: ClickHouse, timeout_s: float
) -> AsyncIterator[Api]:
    producer = create_producer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=timeout_s)
    settings = Settings(
        kafka_topic=topic,
        max_body_bytes=MAX_BODY_BYTES,
        max_events_per_request=MAX_EVENTS,
        retry_after_s=7,
    )
    app = create_app(settings=settings, clickhouse=clickhouse, publisher=publisher)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Api(client, bootstrap_servers, topic)
    finally:
        await stop_producer(producer, timeout_s=timeout_s)


@pytest.fixture
async def api(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> AsyncIterator[Api]:
    """The API on a test server, publishing to a fresh topic."""
    topic = await topic_factory()
    async for served in _serve(
        bootstrap_servers=kafka.bootstrap_servers,
        topic=topic,
        clickhouse=clickhouse,
        timeout_s=10,
    ):
        yield served


def _pod_events(count: int) -> list[dict[str, str]]:
    return [{"type": "pod_entered", "pod_id": str(uuid.uuid4())} for _ in range(count)]


async def test_seed_batch_is_acknowledged_only_once_on_the_topic(api: Api) -> None:
    """A 202 lists one id per event; the pod's events travel in one record, on
    the partition Kafka's default partitioner gives the pod's key."""
    response = await api.client.post(EVENTS_PATH, json=SEED_BATCH)

    assert response.status == 202
    body = await response.json()
    assert body["accepted"] == 4
    events = await read_events(api.bootstrap_servers, api.topic, expected=4)
    ids = [str(event.event.event_id) for _, event in events]
    assert ids == body["event_ids"]
    partitions = sorted(
        await topic_partitions(bootstrap_servers=api.bootstrap_servers, topic=api.topic)
    )
    pod_partition = DefaultPartitioner()(SEED_POD.encode(), partitions, partitions)
    assert {(r.partition, r.offset) for r, _ in events} == {(pod_partition, 0)}
    assert await topic_size(api.bootstrap_servers, api.topic) == 1


async def test_event_time_defaults_to_receipt_and_given_ids_are_kept(api: Api) -> None:
    """occurred_at falls back to received_at; a gateway's event_id is kept."""
    event_id = str(uuid.uuid4())
    batch = {
        "events": [
            {"type": "pod_entered", "pod_id": SEED_POD, "event_id": event_id},
            {
                "type": "pod_entered",
                "pod_id": SEED_POD,
                "occurred_at": "2024-03-10T01:30:00-05:00",
            },
        ]
    }

    response = await api.client.post(EVENTS_PATH, json=batch)

    assert response.status == 202
    assert (await response.json())["event_ids"][0] == event_id
    events = await read_events(api.bootstrap_servers, api.topic, expected=2)
    first, second = (event for _, event in events)
    assert str(first.event.event_id) == event_id
    assert first.event.occurred_at == first.received_at
    assert second.event.occurred_at is not None
    assert second.event.occurred_at.isoformat() == "2024-03-10T06:30:00+00:00"


async def test_gzip_body_is_accepted(api: Api) -> None:
    """A gzip-encoded body is inflated and accepted like a plain one."""
    body = gzip.compress(json.dumps(SEED_BATCH).encode())

    response = await api.client.post(
        EVENTS_PATH,
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )

    assert response.status == 202
    assert (await response.json())["accepted"] == 4


BAD_BODIES = {
    "malformed JSON": (b'{"events": [', "malformed_json"),
    "not UTF-8": (b'{"events": "\xff"}', "malformed_json"),
    "array body": (b"[]", "invalid_body"),
    "missing events": (b"{}", "invalid_body"),
    "events not a list": (b'{"events": {"type": "pod_entered"}}', "invalid_body"),
    "empty events": (b'{"events": []}', "invalid_body"),
    "unknown top-level field": (b'{"events": [], "extra": 1}', "invalid_body"),
}


@pytest.mark.parametrize(("body", "code"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_malformed_bodies_are_refused_with_400(
    api: Api, body: bytes, code: str
) -> None:
    """Every malformed body gets a 400 that names the problem; nothing is published."""
    response = await api.client.post(EVENTS_PATH, data=body)

    assert response.status == 400
    payload = await response.json()
    assert payload["error"] == code
    assert payload["message"]
    assert await topic_size(api.bootstrap_servers, api.topic) == 0


async def test_one_bad_event_refuses_the_whole_batch(api: Api) -> None:
    """A batch with one invalid event is refused whole, the problem located."""
    events = [*_pod_events(3), {"type": "checkout_started", "artifact_ids": ["x"]}]

    response = await api.client.post(EVENTS_PATH, json={"events": events})

    assert response.status == 400
    problems = (await response.json())["problems"]
    assert problems == [
        {"index": 3, "path": "artifact_ids.0", "message": problems[0]["message"]}
    ]
    assert "UUID" in problems[0]["message"]
    assert await topic_size(api.bootstrap_servers, api.topic) == 0


async def test_every_problem_of_a_batch_is_listed(api: Api) -> None:
    """The 400 lists each invalid field of each event, not only the first."""
    events = [
        {"type": "pod_entered"},
        {"type": "teleported", "pod_id": SEED_POD},
        {"pod_id": SEED_POD},
        {"type": "sale_completed", "artifact_id": SEED_POD, "order_id": "1"},
        {"type": "pod_entered", "pod_id": SEED_POD, "occurred_at": "2024-05-20"},
        {"type": "pod_entered", "pod_id": SEED_POD, "podid": SEED_POD},
    ]

    response = await api.client.post(EVENTS_PATH, json={"events": events})

    assert response.status == 400
    located = [(p["index"], p["path"]) for p in (await response.json())["problems"]]
    assert located == [
        (0, "pod_id"),
        (1, "type"),
        (2, "type"),
        (3, "order_id"),
        (4, "occurred_at"),
        (5, "podid"),
    ]


async def test_body_above_the_limit_is_refused_with_413(api: Api) -> None:
    """A body larger than max_body_bytes gets 413 and nothing is published."""
    padding = "x" * MAX_BODY_BYTES
    body = json.dumps({"events": _pod_events(1), "padding": padding}).encode()

    response = await api.client.post(EVENTS_PATH, data=body)

    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"
    assert await topic_size(api.bootstrap_servers, api.topic) == 0


async def test_gzip_bomb_is_refused_by_its_inflated_size(api: Api) -> None:
    """A small gzip body that inflates past the limit gets 413."""
    inflated = b'{"events": [' + b" " * (50 * MAX_BODY_BYTES) + b"]}"
    bomb = gzip.compress(inflated)
    assert len(bomb) < MAX_BODY_BYTES

    response = await api.client.post(
        EVENTS_PATH, data=bomb, headers={"Content-Encoding": "gzip"}
    )

    assert response.status == 413


async def test_too_many_events_are_refused_with_413(api: Api) -> None:
    """More events than max_events_per_request gets 413 naming the limit."""
    response = await api.client.post(
        EVENTS_PATH, json={"events": _pod_events(MAX_EVENTS + 1)}
    )

    assert response.status == 413
    payload = await response.json()
    assert payload["error"] == "too_many_events"
    assert str(MAX_EVENTS) in payload["message"]


async def test_unreachable_kafka_answers_503_with_retry_after(
    tmp_path: Path, clickhouse: ClickHouse
) -> None:
    """When the broker is gone the API answers 503 and Retry-After, never 202."""
    broker = LocalKafka(data_dir=tmp_path / "kafka", cache_dir=KAFKA_CACHE_DIR)
    await broker.start()
    topic = "analytics-events"
    await ensure_topic(
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        partitions=1,
        replication_factor=1,
    )
    async for api in _serve(
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        clickhouse=clickhouse,
        timeout_s=2,
    ):
        broker.kill()

        response = await api.client.post(EVENTS_PATH, json=SEED_BATCH)

        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
        assert (await response.json())["error"] == "kafka_unavailable"
