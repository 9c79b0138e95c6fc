"""The rollups answer exactly what counting the raw events answers.

A generated history of a few thousand events (many pods and artifacts, every
event type, times at arbitrary seconds and thick around the 2024 clock
changes) is stored once; every window, zone and filter is then asked of the
API, all pages walked, and held against two references that never read the
rollups (see ``count_reference``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from aiokafka import AIOKafkaProducer

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity, Window
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import (
    CheckoutStarted,
    EventRecord,
    EventType,
    entity_key,
)
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.streams.dead_letters import DiscardDeadLetters
from gateway_analytics.streams.replay import TimeRange, rebuild
from gateway_analytics.streams.sink import EventSink
from tests.conftest import TopicFactory
from tests.integration.count_reference import (
    ZONES,
    CountFilter,
    assert_counts_match,
    shared_database,
)
from tests.integration.generated_events import (
    PARTITIONS,
    generate_history,
    kafka_positions,
    store_in_batches,
)


class Message(NamedTuple):
    """A consumed Kafka message, as much of it as the sink reads."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


# --- one stored history, asked every question -------------------------------

HISTORY = generate_history(seed=20240310, events=1500, pods=30, artifacts=40)


@pytest.fixture(scope="module")
def stored_history(clickhouse_url: str) -> Iterator[ClickHouse]:
    """A database of its own holding HISTORY, shared by the tests below."""
    with shared_database(clickhouse_url) as clickhouse:
        asyncio.run(store_in_batches(clickhouse, HISTORY.records))
        yield clickhouse


# Ranges that end mid-bucket for every window, written with different offsets.
SPRING = CountFilter(since="2024-03-09T22:45:00Z", until="2024-04-06T17:15:00+00:00")
AUTUMN = CountFilter(since="2024-10-26T23:30:00+02:00", until="2024-11-04T10:45:00Z")


def _filters(entity: Entity) -> list[CountFilter]:
    one, two = HISTORY.busiest(entity, 1), HISTORY.busiest(entity, 2)
    quiet = HISTORY.busiest(entity, 25)[-1:]
    return [
        CountFilter(),
        SPRING,
        CountFilter(ids=one),
        CountFilter(ids=(*two, *quiet)),
        CountFilter(types=("checkout_started",)),
        CountFilter(types=("pod_entered", "sale_completed")),
        replace(SPRING, ids=two, types=("artifact_viewed", "sale_completed")),
        replace(AUTUMN, types=("checkout_started", "pod_entered")),
        CountFilter(ids=quiet, types=("sale_completed",)),
    ]


def case_id(value: object) -> str:
    """The test id of an entity, window or zone parameter."""
    return str(value)


@pytest.mark.parametrize("zone", ZONES, ids=case_id)
@pytest.mark.parametrize("window", list(Window), ids=case_id)
@pytest.mark.parametrize("entity", list(Entity), ids=case_id)
async def test_rollup_counts_equal_counts_of_the_raw_events(
    stored_history: ClickHouse, entity: Entity, window: Window, zone: str | None
) -> None:
    """Every filter, all pages: the API equals the SQL and the Python count."""
    cases = [(entity, window, zone, f) for f in _filters(entity)]

    await assert_counts_match(stored_history, HISTORY.records, cases)


def test_the_history_covers_what_the_cases_rely_on() -> None:
    """Every event type occurs, pods and artifacts repeat, checkouts list repeats."""
    events = [record.event for record in HISTORY.records]

    assert {event.type for event in events} == {kind.value for kind in EventType}
    assert len(HISTORY.busiest(Entity.POD, 100)) == len(HISTORY.pods)
    assert len(HISTORY.busiest(Entity.ARTIFACT, 100)) == len(HISTORY.artifacts)
    assert any(
        len(set(event.artifact_ids)) < len(event.artifact_ids)
        for event in events
        if isinstance(event, CheckoutStarted)
    )
    assert any(
        event.occurred_at is not None and event.occurred_at.microsecond
        for event in events
    )


# --- the same equality after the sink's and the replay's duplicate checks ---

# Every window, unfiltered, in no zone, in a zone that changes its clocks in
# each hemisphere, and in one offset by three quarters of an hour.
SMALL_CASES = [
    (entity, window, zone, CountFilter())
    for entity, window, zone in itertools.product(
        Entity,
        Window,
        [None, "America/New_York", "Australia/Adelaide", "Asia/Kathmandu"],
    )
]


def _with_retries(
    records: Sequence[EventRecord], rng: random.Random, share: float
) -> list[EventRecord]:
    """The records with a share of them sent again by their gateway.

    Each retry is received 30 s after its original and follows it in the
    stream by up to 80 records, so it may share its original's batch or not.
    """
    slots = [(n, False, record) for n, record in enumerate(records)]
    for n, record in enumerate(records):
        if rng.random() < share:
            retry = record.model_copy(
                update={"received_at": record.received_at + timedelta(seconds=30)}
            )
            slots.append((n + rng.randint(1, 80), True, retry))
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    return [record for *_, record in slots]


async def test_counts_equal_the_reference_after_the_sink_drops_duplicates(
    clickhouse: ClickHouse,
) -> None:
    """Retried events and a redelivered batch are counted once, in every bucket."""
    history = generate_history(seed=7, events=500, pods=12, artifacts=20)
    stream = _with_retries(history.records, random.Random(8), share=0.15)
    messages = [
        Message(
            "events", c.partition, c.offset, b"", c.record.model_dump_json().encode()
        )
        for c in kafka_positions(stream)
    ]
    batches = [messages[start : start + 50] for start in range(0, len(messages), 50)]
    sink = EventSink(
        clickhouse=clickhouse, dead_letters=DiscardDeadLetters(), dedup_window_s=3600
    )
    await sink.resume_offsets(range(PARTITIONS))

    for batch in [*batches[:5], batches[3], *batches[5:]]:
        await sink.write(batch)

    assert sink.inserted == len(history.records)
    assert sink.duplicates == len(stream) - len(history.records)
    await assert_counts_match(clickhouse, history.records, SMALL_CASES)


async def _publish(
    kafka: LocalKafka, topic: str, records: Sequence[EventRecord]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True
    )
    await producer.start()
    try:
        deliveries = [
            await producer.send(
                topic, record.model_dump_json().encode(), key=entity_key(record)
            )
            for record in records
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def _rebuild(
    clickhouse: ClickHouse, kafka: LocalKafka, topic: str, time_range: TimeRange
) -> None:
    await rebuild(
        clickhouse=clickhouse,
        bootstrap_servers=kafka.bootstrap_servers,
        topic=topic,
        time_range=time_range,
        batch_size=97,
        dedup_window_s=3600,
    )


async def test_counts_equal_the_reference_after_a_rebuild(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """A rebuild recounts the rollups from the rebuilt table, dropping strays."""
    history = generate_history(seed=11, events=500, pods=10, artifacts=15)
    topic = await topic_factory()
    await _publish(kafka, topic, _with_retries(history.records, random.Random(12), 0.1))
    strays = generate_history(seed=13, events=40, pods=3, artifacts=3)
    await store_in_batches(clickhouse, strays.records)

    await _rebuild(clickhouse, kafka, topic, TimeRange())

    await assert_counts_match(clickhouse, history.records, SMALL_CASES)


async def test_counts_equal_the_reference_after_a_range_rebuild(
    kafka: LocalKafka, topic_factory: TopicFactory, clickhouse: ClickHouse
) -> None:
    """Strays inside the range go, strays outside stay, and the rollups agree."""
    history = generate_history(seed=17, events=500, pods=10, artifacts=15)
    topic = await topic_factory()
    await _publish(kafka, topic, _with_retries(history.records, random.Random(18), 0.1))
    await _rebuild(clickhouse, kafka, topic, TimeRange())
    since = datetime(2024, 3, 20, 5, 15, tzinfo=UTC)
    until = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    strays = generate_history(seed=19, events=60, pods=3, artifacts=3).records
    # Rows claiming real topic positions, as a faulty earlier load would.
    await insert_records(
        clickhouse, [ConsumedRecord(stray, 0, n) for n, stray in enumerate(strays)]
    )
    kept = [s for s in strays if not TimeRange(since, until).contains(s)]
    assert 0 < len(kept) < len(strays)

    await _rebuild(clickhouse, kafka, topic, TimeRange(since, until))

    await assert_counts_match(clickhouse, [*history.records, *kept], SMALL_CASES)
