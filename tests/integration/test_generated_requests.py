"""Thousands of generated requests against the running API and a real broker.

No answer is a 5xx, every 202 is exactly the events the contract allows,
and every accepted event is on the topic and counted, once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.http.app import create_app
from gateway_analytics.shared.kafka import create_producer
from gateway_analytics.shared.local_kafka import LocalKafka, free_port
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.shared.settings import Settings
from gateway_analytics.streams.replay import TimeRange, rebuild
from tests.conftest import TopicFactory
from tests.support import events_on_topic
from tests.unit.test_properties import json_values, valid_events

REQUESTS = 1200


def _batch(events: list[Any]) -> dict[str, Any]:
    return {"events": events}


bodies = st.one_of(
    st.builds(_batch, st.lists(valid_events(), min_size=1, max_size=5)),
    st.builds(_batch, st.lists(json_values, max_size=5)),
    json_values,
)


class ServerThread:
    """The API on its own event loop in a thread, so a synchronous
    hypothesis test can send it requests one by one."""

    def __init__(
        self, *, kafka: LocalKafka, topic: str, clickhouse: ClickHouse
    ) -> None:
        self.port = free_port()
        self.topic = topic
        self._kafka, self._clickhouse = kafka, clickhouse
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(30), "the API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        producer = create_producer(bootstrap_servers=self._kafka.bootstrap_servers)
        await producer.start()
        publisher = KafkaPublisher(producer=producer, topic=self.topic, timeout_s=10)
        app = create_app(
            settings=Settings(kafka_topic=self.topic, max_events_per_request=5),
            clickhouse=self._clickhouse,
            publisher=publisher,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await producer.stop()

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST ``body`` to the events endpoint; the status and JSON answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/analytics/events",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def server(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> Iterator[ServerThread]:
    """The API in a thread, publishing to a fresh topic."""
    topic = asyncio.run(topic_factory())
    with ServerThread(kafka=kafka, topic=topic, clickhouse=clickhouse) as running:
        yield running


def test_generated_requests_never_fail_and_every_accepted_event_is_counted(
    server: ServerThread, kafka: LocalKafka, clickhouse: ClickHouse
) -> None:
    """Over 1,200 generated bodies: only 2xx or 4xx, and 202s add up exactly."""
    accepted: list[int] = []
    statuses: list[int] = []

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
        ],
    )
    @given(bodies)
    def post_generated(body: Any) -> None:
        status, answer = server.post(json.dumps(body).encode())
        statuses.append(status)
        assert status in (202, 400, 413), answer
        if status == 202:
            assert answer["accepted"] == len(body["events"])
            accepted.append(answer["accepted"])

    post_generated()
    topic = server.topic
    on_topic = asyncio.run(events_on_topic(kafka.bootstrap_servers, topic))
    report = asyncio.run(
        rebuild(
            clickhouse=clickhouse,
            bootstrap_servers=kafka.bootstrap_servers,
            topic=topic,
            time_range=TimeRange(),
            batch_size=1000,
            dedup_window_s=3600,
        )
    )

    print(f"\n{len(statuses)} generated requests, {len(accepted)} accepted")
    assert len(statuses) >= REQUESTS // 2
    assert accepted, "the strategy produced no valid batch"
    assert on_topic == sum(accepted)
    assert report.events_stored == sum(accepted)
