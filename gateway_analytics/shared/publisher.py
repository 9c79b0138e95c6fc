"""Publishing accepted events to Kafka, grouped by the partition they belong to.

An event's partition follows from its key (its pod, or its own id), exactly
as Kafka's default partitioner would place a record with that key; so one
pod's events stay on one partition, in order, and a retried event lands
where its first copy did.

Events bound for one partition travel together in as few Kafka records as
their size allows, and not only those of one request: requests that publish
while the event loop is busy with others join the records about to be sent.
Under load a record then carries the events of many requests, which is what
keeps the consumer's per-record cost small; a lone request waits for nobody.
A record whose events all got their ids here says so in its headers (see
:class:`~gateway_analytics.shared.events.topic_values.ValueBuilder`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from gateway_analytics.shared.errors import PublishError
from gateway_analytics.shared.events import EncodedEvent
from gateway_analytics.shared.events.topic_values import ValueBuilder
from gateway_analytics.shared.metrics import KAFKA_PRODUCE_SECONDS

logger = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """Something that makes encoded events durable, or raises PublishError."""

    async def publish(self, events: Sequence[EncodedEvent]) -> None:
        """Return once every event is durable."""


@lru_cache(maxsize=65_536)
def partition_index(key: bytes, partition_count: int) -> int:
    """Which of ``partition_count`` partitions Kafka's default partitioner
    gives ``key``, counting from 0."""
    # aiokafka's murmur2 is pure Python, and a busy gateway repeats its pods.
    chosen: int = DefaultPartitioner()(key, range(partition_count), None)
    return chosen


def group_by_partition(
    events: Sequence[EncodedEvent], partitions: Sequence[int]
) -> dict[int, list[EncodedEvent]]:
    """``events`` per partition their keys select, in order."""
    ordered = sorted(partitions)
    groups: dict[int, list[EncodedEvent]] = {}
    for event in events:
        partition = ordered[partition_index(event.key, len(ordered))]
        groups.setdefault(partition, []).append(event)
    return groups


@dataclass
class _PendingRecord:
    """Events waiting to leave together as one Kafka record."""

    delivered: asyncio.Future[None]
    builder: ValueBuilder = field(default_factory=ValueBuilder)


class KafkaPublisher:
    """Publishes events to one topic and waits for every acknowledgement.

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
        self._pending: dict[int, _PendingRecord] = {}
        self._ready: list[tuple[int, _PendingRecord]] = []
        self._flush_scheduled = False
        # Records leave in the order their events were queued, so one
        # partition's events keep their order on the topic.
        self._sending = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    async def publish(self, events: Sequence[EncodedEvent]) -> None:
        """Send every event and return once the broker acknowledged them all.

        Raises:
            PublishError: the broker refused a record or did not answer within
                the timeout. Some events may still have been written; the sink
                counts a retried ``event_id`` once, within its deduplication
                window.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                partitions = await self._producer.partitions_for(self._topic)
                deliveries = self._queue(group_by_partition(events, partitions))
                if not deliveries:
                    return
                # wait() leaves the shared deliveries alone when this request
                # times out; other requests may be waiting for them too.
                await asyncio.wait(deliveries)
            for delivery in deliveries:
                delivery.result()
            KAFKA_PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except TimeoutError as error:
            raise PublishError(
                f"Kafka did not acknowledge the events within {self._timeout_s} s"
            ) from error
        except KafkaError as error:
            raise PublishError(f"Kafka refused the events: {error}") from error

    def _queue(
        self, groups: dict[int, list[EncodedEvent]]
    ) -> set[asyncio.Future[None]]:
        """Add each partition's events to its pending record; their deliveries."""
        loop = asyncio.get_running_loop()
        deliveries = set()
        for partition, encoded in groups.items():
            pending = self._pending.get(partition)
            for event in encoded:
                if pending is None or not pending.builder.fits(event.json):
                    if pending is not None:
                        self._ready.append((partition, pending))
                    pending = _PendingRecord(delivered=loop.create_future())
                    # Retrieved here too, for when every waiting request
                    # has timed out and none reads the outcome.
                    pending.delivered.add_done_callback(_retrieve)
                    self._pending[partition] = pending
                pending.builder.add(event.json, minted_id=event.minted_id)
                deliveries.add(pending.delivered)
        if not self._flush_scheduled:
            # Requests the loop runs before this callback join these records.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return deliveries

    def _flush(self) -> None:
        self._flush_scheduled = False
        records = self._ready + list(self._pending.items())
        self._ready, self._pending = [], {}
        task = asyncio.ensure_future(self._send(records))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(self, records: list[tuple[int, _PendingRecord]]) -> None:
        async with self._sending:
            for number, (partition, pending) in enumerate(records):
                try:
                    sent = await self._producer.send(
                        self._topic,
                        value=pending.builder.value,
                        partition=partition,
                        headers=pending.builder.headers,
                    )
                except KafkaError as error:
                    _settle(pending.delivered, error)
                    continue
                except asyncio.CancelledError:
                    for _, unsent in records[number:]:
                        _settle(unsent.delivered, KafkaError("publisher stopped"))
                    raise
                sent.add_done_callback(partial(_acknowledged, pending.delivered))


def _acknowledged(
    delivered: asyncio.Future[None], sent: asyncio.Future[object]
) -> None:
    if sent.cancelled():
        _settle(delivered, KafkaError("the send was cancelled"))
    else:
        _settle(delivered, sent.exception())


def _retrieve(delivered: asyncio.Future[None]) -> None:
    if not delivered.cancelled():
        delivered.exception()


def _settle(delivered: asyncio.Future[None], error: BaseException | None) -> None:
    if delivered.done():
        return
    if error is None:
        delivered.set_result(None)
    else:
        delivered.set_exception(error)
