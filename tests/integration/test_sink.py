"""The Faust sink agent between a real topic and the embedded ClickHouse."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared import events
from gateway_analytics.shared.events import (
    FRESH_EVENTS_HEADER,
    EventRecord,
    PodEntered,
    encode_events,
    entity_key,
    fresh_events,
    resolve_records,
)
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.shared.settings import Settings
from gateway_analytics.streams import sink as sink_module
from gateway_analytics.streams.app import create_sink_app
from gateway_analytics.streams.dead_letters import DeadLetterTopic
from gateway_analytics.streams.sink import EventSink
from tests.conftest import TopicFactory
from tests.support import read_topic

BATCH_SIZE = 100


def _records(count: int) -> list[EventRecord]:
    events = [PodEntered(type="pod_entered", pod_id=uuid.uuid4()) for _ in range(count)]
    return resolve_records(events, received_at=datetime.now(UTC))


class Pipeline:
    """A topic, a producer writing to it, and sink agents consuming it."""

    def __init__(self, *, kafka: LocalKafka, topic: str, settings: Settings) -> None:
        self.kafka = kafka
        self.topic = topic
        self.dead_letter_topic = settings.dead_letter_topic
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

    async def publish(self, events: list[PodEntered]) -> list[str]:
        """Publish ``events`` as the API does; their event ids, in order."""
        encoded = encode_events(events, received_at=datetime.now(UTC))
        publisher = KafkaPublisher(
            producer=self.producer, topic=self.topic, timeout_s=30
        )
        await publisher.publish(encoded)
        return [event.event_id for event in encoded]

    async def produce_records(self, records: list[EventRecord]) -> set[tuple[int, int]]:
        values = [record.model_dump_json().encode() for record in records]
        return await self.produce(values, [entity_key(record) for record in records])

    async def start_sink(self, clickhouse: ClickHouse) -> tuple[Any, EventSink]:
        app, sink = create_sink_app(
            settings=self.settings,
            bootstrap_servers=self.kafka.bootstrap_servers,
            clickhouse=clickhouse,
            dead_letters=DeadLetterTopic(
                producer=self.producer, topic=self.dead_letter_topic
            ),
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
        dead_letter_topic=await topic_factory(partitions=1),
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


async def _settled_count(clickhouse: ClickHouse, expected: int) -> int:
    """The row count a second after it reached ``expected``: room for a batch
    stored twice to show up."""
    await _stored(clickhouse, expected)
    await asyncio.sleep(1.0)
    return await _stored(clickhouse, expected)


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
        await app.stop()

    assert stored == len(records)
    rows = await clickhouse.query(
        "SELECT toString(event_id), kafka_partition, kafka_offset FROM analytics_events"
    )
    assert {row[0] for row in rows} == {str(r.event.event_id) for r in records}
    assert {(row[1], row[2]) for row in rows} == positions
    flushed = [r.args[0] for r in caplog.records if r.msg.startswith("Flushed")]
    assert sum(flushed) == len(records)
    assert max(flushed) <= BATCH_SIZE


async def test_the_end_of_a_backlog_does_not_wait_out_the_flush_interval(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """More records than one take: the rest is stored once the topic is
    drained, long before the interval would end the last take."""
    pipeline.settings = pipeline.settings.model_copy(
        update={"sink_flush_interval_s": 120.0}
    )
    records = _records(1_500)  # a take holds 1,024 records
    await pipeline.produce_records(records)

    app, _ = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(records), timeout_s=60)
    finally:
        await app.stop()

    assert stored == len(records)


async def test_a_trickle_is_gathered_for_the_flush_interval(
    pipeline: Pipeline, clickhouse: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    """Records coming one by one, further apart than a drained backlog waits,
    still share one insert."""
    pipeline.settings = pipeline.settings.model_copy(
        update={"sink_flush_interval_s": 5.0}
    )
    caplog.set_level(logging.INFO, logger="gateway_analytics.streams.sink")
    app, _ = await pipeline.start_sink(clickhouse)
    try:
        await pipeline.produce_records(_records(1))
        await _stored(clickhouse, 1)
        for _ in range(3):
            await asyncio.sleep(0.3)
            await pipeline.produce_records(_records(1))
        stored = await _stored(clickhouse, 4)
    finally:
        await app.stop()

    assert stored == 4
    flushed = [r.args[0] for r in caplog.records if r.msg.startswith("Flushed")]
    assert flushed == [1, 3]


async def test_poison_record_goes_to_the_dead_letter_topic_with_its_reason(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """A record that is not the contract is dead-lettered; the records after it land."""
    key = b"same-partition"
    poison = await pipeline.produce([b"not json", b'{"event": {}}'], [key, key])
    good = _records(20)
    await pipeline.produce_records(good)

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(good))
    finally:
        await app.stop()

    assert stored == len(good)
    assert sink.dead_letters == 2
    letters = await read_topic(
        pipeline.kafka.bootstrap_servers, pipeline.dead_letter_topic, expected=2
    )
    assert sorted(letter.value for letter in letters) == [b"not json", b'{"event": {}}']
    headers = [dict(letter.headers) for letter in letters]
    assert {
        (int(h["original_partition"]), int(h["original_offset"])) for h in headers
    } == poison
    assert {h["original_topic"] for h in headers} == {pipeline.topic.encode()}
    assert all(h["reason"] for h in headers)
    assert (
        b"JSON" in dict(letters[0].headers)["reason"]
        or b"JSON" in dict(letters[1].headers)["reason"]
    )


def _pod_events(count: int, **fields: Any) -> list[PodEntered]:
    return [
        PodEntered(type="pod_entered", pod_id=uuid.uuid4(), **fields)
        for _ in range(count)
    ]


async def _stored_ids(clickhouse: ClickHouse) -> list[str]:
    rows = await clickhouse.query("SELECT toString(event_id) FROM analytics_events")
    return sorted(row[0] for row in rows)


async def test_values_the_api_wrote_with_fresh_ids_are_stored_whole(
    pipeline: Pipeline, clickhouse: ClickHouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records announcing fresh events are stored, every event once, with
    the record's position; the sink counts them without decoding them."""
    decoded: list[bytes] = []

    def decode_value(value: bytes) -> list[EventRecord]:
        decoded.append(value)
        return events.decode_value(value)

    monkeypatch.setattr(sink_module, "decode_value", decode_value)
    event_ids = await pipeline.publish(_pod_events(450))
    consumed = await read_topic(
        pipeline.kafka.bootstrap_servers, pipeline.topic, expected=1
    )
    assert sum(fresh_events(m.headers) or 0 for m in consumed) == 450

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _settled_count(clickhouse, len(event_ids))
    finally:
        await app.stop()

    assert stored == sink.inserted == 450
    assert decoded == []
    assert await _stored_ids(clickhouse) == sorted(event_ids)
    assert await _distinct_positions(clickhouse) == len(consumed)


async def test_a_fresh_value_clickhouse_refuses_is_dead_lettered(
    pipeline: Pipeline, clickhouse: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    """A record whose header is wrong fails its insert, is then decoded and
    dead-lettered; the fresh values sharing its batch are stored."""
    caplog.set_level(logging.WARNING, logger="gateway_analytics.streams.sink")
    before = await pipeline.publish(_pod_events(30))
    header = [(FRESH_EVENTS_HEADER, b"1")]
    key = b"one-partition"
    for value in (b"not json", b'[{"received_at": "soon", "event": {}}]'):
        await pipeline.producer.send_and_wait(
            pipeline.topic, value=value, key=key, headers=header
        )
    after = await pipeline.publish(_pod_events(30))

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(before) + len(after))
        await asyncio.sleep(1.0)
        stored = await _stored(clickhouse, len(before) + len(after))
    finally:
        await app.stop()

    assert stored == 60
    assert await _stored_ids(clickhouse) == sorted(before + after)
    assert sink.dead_letters == 2
    assert any(r.msg.startswith("Decoding a batch") for r in caplog.records)
    letters = await read_topic(
        pipeline.kafka.bootstrap_servers, pipeline.dead_letter_topic, expected=2
    )
    assert len(letters) == 2


async def test_a_minted_id_sent_again_by_the_client_is_counted_once(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """A client resending events under the ids the API answered with is
    retrying them, whether the first copies are stored yet or not."""
    first = _pod_events(40)
    minted = await pipeline.publish(first)
    resent = [
        event.model_copy(update={"event_id": uuid.UUID(event_id)})
        for event, event_id in zip(first, minted, strict=True)
    ]
    await pipeline.publish(resent[:20])  # the same batch as the fresh copies

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        await _stored(clickhouse, len(first))
        await pipeline.publish(resent[20:])  # a later batch
        await asyncio.sleep(1.5)
        stored = await _stored(clickhouse, len(first))
    finally:
        await app.stop()

    assert stored == 40
    assert await _stored_ids(clickhouse) == sorted(minted)
    assert sink.duplicates == 40


async def test_rows_already_stored_are_not_inserted_again(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """After a crash between insert and commit, stored offsets are skipped."""
    records = _records(300)
    positions = sorted(await pipeline.produce_records(records))
    consumed = await read_topic(
        pipeline.kafka.bootstrap_servers, pipeline.topic, expected=300
    )
    by_position = {(m.partition, m.offset): m for m in consumed}
    # What a sink that crashed before committing would have left behind:
    # the first half of every partition stored, no offset committed.
    already = [p for p in positions if p[1] < 50]
    await insert_records(
        clickhouse,
        [
            ConsumedRecord(EventRecord.model_validate_json(by_position[p].value), *p)
            for p in already
        ],
    )

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _settled_count(clickhouse, len(records))
    finally:
        await app.stop()

    assert stored == len(records)
    assert sink.inserted == len(records) - len(already)
    assert sink.duplicates == 0, "skipped by offset, not left to the event_id check"
    assert await _distinct_positions(clickhouse) == len(records)


async def test_a_retried_batch_split_differently_is_counted_once(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """The same event_ids published again, in other batches, are stored once."""
    records = _records(200)
    await pipeline.produce_records(records)
    later = datetime.now(UTC)
    retried = [record.model_copy(update={"received_at": later}) for record in records]
    await pipeline.produce_records(retried[120:])
    await pipeline.produce_records(retried[:120])

    app, sink = await pipeline.start_sink(clickhouse)
    try:
        stored = await _stored(clickhouse, len(records))
        await asyncio.sleep(1.0)
        stored = await _stored(clickhouse, len(records))
    finally:
        await app.stop()

    assert stored == len(records)
    assert sink.duplicates == len(records)
    ids = await clickhouse.query("SELECT uniqExact(event_id) FROM analytics_events")
    assert ids == [(len(records),)]


async def test_clickhouse_outage_stops_the_sink_until_it_is_back(
    pipeline: Pipeline, clickhouse: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    """With the table gone the sink retries and waits; nothing is lost after."""
    caplog.set_level(logging.WARNING, logger="gateway_analytics.streams.sink")
    app, _ = await pipeline.start_sink(clickhouse)
    try:
        first = _records(100)
        await pipeline.produce_records(first)
        await _stored(clickhouse, len(first))
        await clickhouse.command("DETACH TABLE analytics_events")
        second = _records(400)
        await pipeline.produce_records(second)
        await asyncio.sleep(4.0)  # several failed attempts
        failures = [r for r in caplog.records if r.msg.startswith("Failed")]
        await clickhouse.command("ATTACH TABLE analytics_events")
        stored = await _stored(clickhouse, len(first) + len(second))
        await asyncio.sleep(1.0)
        stored = await _stored(clickhouse, len(first) + len(second))
    finally:
        await app.stop()

    assert len(failures) >= 2
    assert stored == len(first) + len(second)
    assert await _distinct_positions(clickhouse) == stored


async def test_two_agents_in_one_group_store_each_record_once(
    pipeline: Pipeline, clickhouse: ClickHouse, clickhouse_url: str
) -> None:
    """One of two group members stops mid-stream; the other takes over cleanly.

    chDB hosts one engine per process, so both members run in this process,
    each a separate Faust app with its own Kafka consumer and its own
    ClickHouse connection to the same engine and database. They are real
    members of one consumer group and go through a real rebalance.
    """
    database = (await clickhouse.query("SELECT currentDatabase()"))[0][0]
    second_connection = connect(url=clickhouse_url, database=database)
    first_app, first_sink = await pipeline.start_sink(clickhouse)
    second_app, second_sink = await pipeline.start_sink(second_connection)
    try:
        sent = 0
        for round_number in range(6):
            records = _records(500)
            await pipeline.produce_records(records)
            sent += len(records)
            if round_number == 2:
                await _stored(clickhouse, sent - 250)
                await first_app.stop()
            await asyncio.sleep(0.3)
        stored = await _stored(clickhouse, sent, timeout_s=60)
        await asyncio.sleep(1.0)
        stored = await _stored(clickhouse, sent)
    finally:
        await second_app.stop()
        await second_connection.close()

    assert stored == sent
    assert await _distinct_positions(clickhouse) == sent
    assert first_sink.duplicates + second_sink.duplicates == 0


async def _distinct_positions(clickhouse: ClickHouse) -> int:
    rows = await clickhouse.query(
        "SELECT uniqExact(kafka_partition, kafka_offset) FROM analytics_events"
    )
    return int(rows[0][0])


async def test_offsets_are_committed_after_the_insert_and_resumed_from(
    pipeline: Pipeline, clickhouse: ClickHouse
) -> None:
    """A restarted agent continues after the stored events without repeating them."""
    first, second = _records(300), _records(200)
    await pipeline.produce_records(first)
    app, _ = await pipeline.start_sink(clickhouse)
    await _stored(clickhouse, len(first))
    await app.stop()
    committed = await _committed(pipeline)

    await pipeline.produce_records(second)
    app, _ = await pipeline.start_sink(clickhouse)
    try:
        stored = await _settled_count(clickhouse, len(first) + len(second))
    finally:
        await app.stop()

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
