"""The local broker launcher: a real KRaft broker that keeps its data."""

from __future__ import annotations

from pathlib import Path

from gateway_analytics.shared.kafka import ensure_topic, topic_partitions
from gateway_analytics.shared.local_kafka import LocalKafka
from tests.conftest import KAFKA_CACHE_DIR


async def test_topic_is_created_once_and_survives_a_restart(tmp_path: Path) -> None:
    """Storage is formatted once: a restarted broker still has the topic."""
    broker = LocalKafka(data_dir=tmp_path / "kafka", cache_dir=KAFKA_CACHE_DIR)
    await broker.start()
    try:
        for _ in range(2):
            await ensure_topic(
                bootstrap_servers=broker.bootstrap_servers,
                topic="analytics-events",
                partitions=4,
                replication_factor=1,
            )
        broker.stop()

        await broker.start()
        partitions = await topic_partitions(
            bootstrap_servers=broker.bootstrap_servers, topic="analytics-events"
        )
    finally:
        broker.stop()

    assert partitions == [0, 1, 2, 3]
    assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0
