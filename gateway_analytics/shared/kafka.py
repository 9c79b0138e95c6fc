"""Kafka clients as the API and the sink agent both configure them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from gateway_analytics.shared.errors import ConfigurationError

logger = logging.getLogger(__name__)


def create_producer(*, bootstrap_servers: str) -> AIOKafkaProducer:
    """A producer whose acknowledgement means the events are durable.

    Idempotence implies ``acks=all`` and lets the producer retry a send
    without writing the record twice.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        compression_type=None,
    )


async def ensure_topic(
    *, bootstrap_servers: str, topic: str, partitions: int, replication_factor: int
) -> None:
    """Create ``topic`` when it is missing; an existing topic is left as it is.

    Raises:
        ConfigurationError: Kafka refused to create the topic.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor)]
        )
    finally:
        await admin.close()
    for _name, code, *details in response.topic_errors:
        if code == TopicAlreadyExistsError.errno:
            return
        if code:
            message = details[0] if details else ""
            raise ConfigurationError(
                f"Kafka refused to create topic {topic!r}: "
                f"{for_code(code).__name__} {message}"
            )
    logger.info("Created topic %s with %d partitions", topic, partitions)


async def stop_producer(producer: AIOKafkaProducer, *, timeout_s: float) -> None:
    """Flush and stop ``producer``, giving up after ``timeout_s``.

    With the broker gone, aiokafka would retry the records still buffered
    forever and never stop. Their requests were already answered 503, so
    dropping them loses nothing a client was told is durable.
    """
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except TimeoutError:
        logger.warning(
            "Kafka producer did not flush within %.0f s; dropped records that "
            "were never acknowledged",
            timeout_s,
        )


async def topic_partitions(*, bootstrap_servers: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``; empty when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"]:
        return []
    return sorted(partition["partition"] for partition in description["partitions"])
