"""The publisher against a real broker: concurrent requests share records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from gateway_analytics.shared.events import (
    EncodedEvent,
    PodEntered,
    encode_events,
    topic_values,
)
from gateway_analytics.shared.kafka import create_producer, topic_partitions
from gateway_analytics.shared.local_kafka import LocalKafka
from gateway_analytics.shared.publisher import KafkaPublisher
from tests.conftest import TopicFactory
from tests.support import read_events, topic_size

PARTITIONS = 3


@pytest.fixture
async def producer(kafka: LocalKafka) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer with the API's settings."""
    started = create_producer(bootstrap_servers=kafka.bootstrap_servers)
    await started.start()
    yield started
    await started.stop()


def _request(events: int) -> list[EncodedEvent]:
    pods = [uuid.uuid4() for _ in range(events)]
    return encode_events(
        [PodEntered(type="pod_entered", pod_id=pod) for pod in pods],
        received_at=datetime.now(UTC),
    )


async def test_concurrent_publishes_share_one_record_per_partition(
    kafka: LocalKafka, topic_factory: TopicFactory, producer: AIOKafkaProducer
) -> None:
    """Requests queued before the flush leave together: one record per
    partition holds them all, each event once, on its key's partition, in the
    order the requests came."""
    topic = await topic_factory(partitions=PARTITIONS)
    publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=10)
    warm_up = _request(1)
    await publisher.publish(warm_up)
    requests = [_request(10) for _ in range(20)]

    await asyncio.gather(*(publisher.publish(request) for request in requests))

    sent = [event for request in requests for event in request]
    stored = await read_events(kafka.bootstrap_servers, topic, expected=201)
    assert await topic_size(kafka.bootstrap_servers, topic) <= 1 + PARTITIONS
    stored_ids = [
        str(record.event.event_id)
        for _, record in stored
        if str(record.event.event_id) != warm_up[0].event_id
    ]
    partitions = sorted(
        await topic_partitions(bootstrap_servers=kafka.bootstrap_servers, topic=topic)
    )
    choose = DefaultPartitioner()
    by_partition = sorted(
        sent, key=lambda event: choose(event.key, partitions, partitions)
    )
    assert stored_ids == [event.event_id for event in by_partition]
    for kafka_record, record in stored:
        key = str(record.event.pod_id).encode()
        assert kafka_record.partition == choose(key, partitions, partitions)


async def test_a_record_never_passes_the_size_limit(
    kafka: LocalKafka,
    topic_factory: TopicFactory,
    producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events beyond what one record may hold go on in further records."""
    topic = await topic_factory(partitions=1)
    publisher = KafkaPublisher(producer=producer, topic=topic, timeout_s=10)
    events = _request(50)
    limit_bytes = 2 + 10 * (len(events[0].json) + 1)
    monkeypatch.setattr(topic_values, "MAX_VALUE_BYTES", limit_bytes)

    await asyncio.gather(publisher.publish(events[:25]), publisher.publish(events[25:]))

    stored = await read_events(kafka.bootstrap_servers, topic, expected=50)
    assert [str(record.event.event_id) for _, record in stored] == [
        event.event_id for event in events
    ]
    assert await topic_size(kafka.bootstrap_servers, topic) == 5
    assert all(
        len(kafka_record.value or b"") <= limit_bytes for kafka_record, _ in stored
    )
