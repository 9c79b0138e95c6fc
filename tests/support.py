"""Helpers the integration and end-to-end tests share."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from gateway_analytics.shared.events import EventRecord, decode_value
from gateway_analytics.shared.kafka import topic_partitions

SEED_POD = "a7fcb4fe-5f07-4e20-9af5-15e617c901c6"
SEED_ARTIFACT = "6b7ccf45-2a29-4c78-8b21-2d3f1ad97f77"
SEED_ORDER = "a4a70e58-9681-49b3-8a68-395e0ae7b2e5"
SEED_BATCH = {
    "events": [
        {
            "type": "pod_entered",
            "pod_id": SEED_POD,
            "occurred_at": "2024-05-20T12:00:00Z",
        },
        {"type": "artifact_viewed", "artifact_id": SEED_ARTIFACT, "pod_id": SEED_POD},
        {
            "type": "checkout_started",
            "artifact_ids": [SEED_ARTIFACT],
            "pod_id": SEED_POD,
        },
        {
            "type": "sale_completed",
            "order_id": SEED_ORDER,
            "artifact_id": SEED_ARTIFACT,
            "pod_id": SEED_POD,
        },
    ]
}


async def read_topic(
    bootstrap_servers: str, topic: str, *, expected: int, timeout_s: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the start, once ``expected`` have arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def topic_size(bootstrap_servers: str, topic: str) -> int:
    """How many records ``topic`` holds, summed over its partitions."""
    partitions = await topic_partitions(
        bootstrap_servers=bootstrap_servers, topic=topic
    )
    assert partitions, f"topic {topic} does not exist"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(
            [TopicPartition(topic, partition) for partition in partitions]
        )
    finally:
        await consumer.stop()
    return sum(ends.values())


async def read_events(
    bootstrap_servers: str, topic: str, *, expected: int, timeout_s: float = 20.0
) -> list[tuple[ConsumerRecord[bytes, bytes], EventRecord]]:
    """Every event on ``topic`` with the Kafka record that carried it, in
    partition and offset order, once ``expected`` events have arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    events: list[tuple[ConsumerRecord[bytes, bytes], EventRecord]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(events) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                for record in batch:
                    events.extend(
                        (record, event) for event in decode_value(record.value or b"")
                    )
    finally:
        await consumer.stop()
    return sorted(events, key=lambda pair: (pair[0].partition, pair[0].offset))


async def events_on_topic(bootstrap_servers: str, topic: str) -> int:
    """How many events the records of ``topic`` carry, all partitions summed."""
    records = await read_topic(
        bootstrap_servers,
        topic,
        expected=await topic_size(bootstrap_servers, topic),
    )
    return sum(len(decode_value(record.value or b"")) for record in records)
