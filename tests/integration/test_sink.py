"""The Faust sink agent between a real topic and the embedded ClickHouse."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.http.ingest import resolve_records
from gateway_analytics.shared.events import EventRecord, PodEntered, entity_key
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.settings import Settings
from gateway_analytics.streams.app import create_sink_app
from gateway_analytics.streams.sink import EventSink
from tests.conftest import TopicFactory

BATCH_SIZE = 100


def _records(count: int) -> list[EventRecord]:
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(count)]
    return resolve_records(events, received_at=datetime.now(UTC))


class Pipeline:
    """A topic, a producer writing to it, and sink agents consuming it."""

    def __init__(self, *, kafka: LocalKafka, topic: str, settings: Settings) -> None:
        self.kafka = kafka
        self.topic = topic
        self.settings = settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True
        )

    async def produce(
        self, values: list[bytes], keys: list[bytes]
    ) -> set[tuple[int, int]]:
        """Write the values; return the (partition, offset) of each record."""
        deliveries = [
            await self.producer.send(self.topic, value=value, key=key)
            for value, key in zip(values, keys, strict=True)
        ]
        return {(m.partition, m.offset) for m in await asyncio.gather(*deliveries)}

    async def produce_records(self, records: list[EventRecord]) -> set[tuple[int, int]]:
        values = [record.model_dump_json().encode() for record in records]
        return await self.produce(values, [entity_key(record) for record in records])

    async def start_sink(self, clickhouse: ClickHouse) -> tuple[object, EventSink]:
        app, sink = create_sink_app(
            settings=self.settings,
            bootstrap_servers=self.kafka.bootstrap_servers,
            clickhouse=clickhouse,
        )
        await app.start()
        return app, sink


@pytest.fixture
async def pipeline(
    kafka: LocalKafka, topic_factory: TopicFactory, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    """A fresh topic and consumer group, with settings for a small batch size."""
    topic = await topic_factory(partitions=3)
    settings = Settings(
        data_dir=tmp_path,
        kafka_topic=topic,
        consumer_group=f"sink-{topic}",
        sink_batch_size=BATCH_SIZE,
        sink_flush_interval_s=0.2,
    )
    pipeline = Pipeline(kafka=kafka, topic=topic, settings=settings)
    await pipeline.producer.start()
    yield pipeline
    await pipeline.producer.stop()


async def _stored(clickhouse: ClickHouse, expected: int, timeout_s: float = 30) -> int:
    """The row count once it reaches ``expected``, or when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await clickhouse.query("SELECT count() FROM analytics_events")
        count = int(rows[0][0])
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


async def test_every_record_is_stored_with_its_partition_and_offset(
    pipeline: Pipeline, clickhouse: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    """Each event becomes one row that names where in the topic it was read."""
    records = _records(450)
    positions = await pipeline.produce_records(records)
    caplog.set_level(logging.INFO, logger="gateway_analytics.streams.sink")

    app, _ = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(records))
    finally:
        await app.stop()  # type: ignore[attr-defined]

    assert stored == len(records)
    rows = await clickhouse.query(
        "SELECT toString(event_id), kafka_partition, kafka_offset FROM analytics_events"
    )
    assert {row[0] for row in rows} == {str(r.event.event_id) for r in records}
    assert {(row[1], row[2]) for row in rows} == positions
    flushed = [r.args[0] for r in caplog.records if r.msg.startswith("Flushed")]
    assert sum(flushed) == len(records)
    assert max(flushed) <= BATCH_SIZE


async def test_undecodable_records_are_skipped_not_stalled_on(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """A record that is not the contract is skipped; the records after it land."""
    key = b"same-partition"
    await pipeline.produce([b"not json", b'{"event": {}}'], [key, key])
    good = _records(20)
    await pipeline.produce_records(good)

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(good))
    finally:
        await app.stop()  # type: ignore[attr-defined]

    assert stored == len(good)
    assert sink.undecodable == 2


async def test_offsets_are_committed_after_the_insert_and_resumed_from(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """A restarted agent continues after the stored events without repeating them."""
    first, second = _records(300), _records(200)
    await pipeline.produce_records(first)
    app, _ = await pipeline.start_sink(clickhouse)
    await _stored(clickhouse, len(first))
    await app.stop()  # type: ignore[attr-defined]
    committed = await _committed(pipeline)

    await pipeline.produce_records(second)
    app, _ = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(first) + len(second))
        await asyncio.sleep(1.0)  # room for a repeated batch to show up
        stored = await _stored(clickhouse, len(first) + len(second))
    finally:
        await app.stop()  # type: ignore[attr-defined]

    assert committed == len(first)
    assert stored == len(first) + len(second)


async def _committed(pipeline: Pipeline) -> int:
    """Sum of the consumer group's committed offsets on the topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            pipeline.settings.consumer_group
        )
    finally:
        await admin.close()
    return sum(
        meta.offset for tp, meta in offsets.items() if tp.topic == pipeline.topic
    )
