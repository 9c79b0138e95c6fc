"""Publishing accepted events to Kafka, one record per event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway_analytics.shared.errors import PublishError
from gateway_analytics.shared.events import EventRecord, entity_key
from gateway_analytics.shared.metrics import KAFKA_PRODUCE_SECONDS

logger = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """Something that makes event records durable, or raises PublishError."""

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Return once every record is durable."""


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
                the timeout. Some records may still have been written, and the
                sink does not yet recognise a retried ``event_id``: a retry of
                such a batch stores those events twice.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                deliveries = [
                    await self._producer.send(
                        self._topic,
                        value=record.model_dump_json().encode(),
                        key=entity_key(record),
                    )
                    for record in records
                ]
                await asyncio.gather(*deliveries)
            KAFKA_PRODUCE_SECONDS.observe(time.perf_counter() - started)
        except TimeoutError as error:
            raise PublishError(
                f"Kafka did not acknowledge the events within {self._timeout_s} s"
            ) from error
        except KafkaError as error:
            raise PublishError(f"Kafka refused the events: {error}") from error
