"""Fixtures shared by every test layer: a real Kafka broker, a real ClickHouse."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.migrations import migrate
from gateway_analytics.shared.kafka import ensure_topic
from gateway_analytics.shared.local_kafka import LocalKafka

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_CACHE_DIR = REPO_ROOT / ".cache"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """One local broker for the whole session; each test uses its own topics."""
    broker = LocalKafka(
        data_dir=tmp_path_factory.mktemp("kafka"), cache_dir=KAFKA_CACHE_DIR
    )
    asyncio.run(broker.start())
    yield broker
    broker.stop()


@pytest.fixture
def topic_factory(kafka: LocalKafka) -> TopicFactory:
    """Creates uniquely named topics on the session broker."""
    return TopicFactory(kafka.bootstrap_servers)


class TopicFactory:
    """Makes a fresh topic per call, so tests never see each other's records."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers

    async def __call__(self, *, partitions: int = 3) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        await ensure_topic(
            bootstrap_servers=self.bootstrap_servers,
            topic=name,
            partitions=partitions,
            replication_factor=1,
        )
        return name


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded engine's folder; chDB allows one per process."""
    return f"chdb://{tmp_path_factory.mktemp('clickhouse')}"


@pytest.fixture
async def clickhouse(clickhouse_url: str) -> AsyncIterator[ClickHouse]:
    """A migrated database of its own for one test, dropped afterwards."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(url=clickhouse_url, database=database)
    await migrate(client)
    yield client
    await client.command(f"DROP DATABASE IF EXISTS `{database}`")
    await client.close()
