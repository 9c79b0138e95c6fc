"""The dead-letter topic: records the sink cannot store, kept with the reason."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

logger = logging.getLogger(__name__)


class DeadLetterSink(Protocol):
    """Where undecodable records go instead of blocking their partition."""

    async def send(self, message: Any, reason: str) -> None:
        """Keep ``message`` (a consumed Kafka message) with ``reason``."""


class DeadLetterTopic:
    """Publishes undecodable records to a topic, headers saying why and whence.

    The headers are ``reason``, ``original_topic``, ``original_partition`` and
    ``original_offset``; key and value are the original bytes.
    """

    def __init__(self, *, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, message: Any, reason: str) -> None:
        """Publish ``message`` and return once the broker acknowledged it."""
        headers = [
            ("reason", reason.encode()),
            ("original_topic", message.topic.encode()),
            ("original_partition", str(message.partition).encode()),
            ("original_offset", str(message.offset).encode()),
        ]
        delivery = await self._producer.send(
            self._topic, value=message.value, key=message.key, headers=headers
        )
        await delivery


class DiscardDeadLetters:
    """Counts undecodable records and keeps nothing; replays use it, since the
    live sink already sent those records to the dead-letter topic."""

    async def send(self, message: Any, reason: str) -> None:
        """Drop the message."""
