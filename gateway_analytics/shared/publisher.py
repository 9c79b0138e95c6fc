"""Publishing accepted events to Kafka, grouped by the partition they belong to.

An event's partition follows from its key (its pod, or its own id), exactly
as Kafka's default partitioner would place a record with that key; so one
pod's events stay on one partition, in order, and a retried event lands
where its first copy did. The events of a request bound for one partition
travel together in as few Kafka records as their size allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from gateway_analytics.shared.errors import PublishError
from gateway_analytics.shared.events import EventRecord, encode_values, entity_key
from gateway_analytics.shared.metrics import KAFKA_PRODUCE_SECONDS

logger = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """Something that makes event records durable, or raises PublishError."""

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Return once every record is durable."""


@lru_cache(maxsize=65_536)
def _partition_index(key: bytes, partition_count: int) -> int:
    # aiokafka's murmur2 is pure Python, and a busy gateway repeats its pods.
    chosen: int = DefaultPartitioner()(key, range(partition_count), None)
    return chosen


def partitioned_values(
    records: Sequence[EventRecord], partitions: Sequence[int]
) -> list[tuple[int, bytes]]:
    """The Kafka record values for ``records``, each with its partition.

    Records keep their order within a partition.
    """
    ordered = sorted(partitions)
    by_partition: dict[int, list[EventRecord]] = {}
    for record in records:
        partition = ordered[_partition_index(entity_key(record), len(ordered))]
        by_partition.setdefault(partition, []).append(record)
    return [
        (partition, value)
        for partition, group in by_partition.items()
        for value in encode_values(group)
    ]


class KafkaPublisher:
    """Publishes event records to one topic and waits for every acknowledgement.

    Args:
        producer: a started producer with idempotence enabled.
        topic: the events topic.
        timeout_s: how long a publish may wait for the broker.
    """

    def __init__(
        self, *, producer: AIOKafkaProducer, topic: str, timeout_s: float
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Send every record and return once the broker acknowledged them all.

        Raises:
            PublishError: the broker refused a record or did not answer within
                the timeout. Some records may still have been written; the sink
                counts a retried ``event_id`` once, within its deduplication
                window.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                partitions = await self._producer.partitions_for(self._topic)
                deliveries = [
                    await self._producer.send(
                        self._topic, value=value, partition=partition
                    )
                    for partition, value in partitioned_values(records, partitions)
                ]
                await asyncio.gather(*deliveries)
            KAFKA_PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except TimeoutError as error:
            raise PublishError(
                f"Kafka did not acknowledge the events within {self._timeout_s} s"
            ) from error
        except KafkaError as error:
            raise PublishError(f"Kafka refused the events: {error}") from error
