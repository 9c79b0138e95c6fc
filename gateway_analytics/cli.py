"""The ``gateway-analytics`` command line: the one place the parts are joined.

``run`` runs the API and the sink agent in one process, by default over the
embedded ClickHouse (chDB hosts one engine per process) and a local Kafka
broker it starts itself; configured servers take their place when set.
``api`` and ``worker`` run the two halves apart, against a Kafka cluster and
a ClickHouse server, as in docker-compose and production.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.migrations import migrate
from gateway_analytics.http.app import create_app
from gateway_analytics.http.publisher import KafkaPublisher
from gateway_analytics.shared.errors import AnalyticsError, ConfigurationError
from gateway_analytics.shared.events.schema_files import export_schemas
from gateway_analytics.shared.kafka import create_producer, ensure_topic, stop_producer
from gateway_analytics.shared.local_kafka import LocalKafka, fetch_kafka
from gateway_analytics.shared.logs import configure_logging
from gateway_analytics.shared.settings import Settings, load_settings
from gateway_analytics.streams.app import create_sink_app
from gateway_analytics.streams.dead_letters import DeadLetterTopic

logger = logging.getLogger(__name__)


async def run_local(settings: Settings) -> None:
    """API and sink agent in one process, with a local broker unless one is set."""
    async with AsyncExitStack() as stack:
        bootstrap_servers = settings.kafka_bootstrap_servers
        if not bootstrap_servers:
            kafka = LocalKafka(
                data_dir=settings.data_dir / "kafka",
                cache_dir=settings.kafka_cache_dir,
            )
            await stack.enter_async_context(kafka)
            bootstrap_servers = kafka.bootstrap_servers
        await _prepare(stack, settings, bootstrap_servers)
        await _start_sink(stack, settings, bootstrap_servers)
        await _start_api(stack, settings, bootstrap_servers)
        await _until_stopped()


async def run_api(settings: Settings) -> None:
    """The API alone, against the configured Kafka and ClickHouse."""
    bootstrap_servers = _required_bootstrap_servers(settings, "api")
    async with AsyncExitStack() as stack:
        await _prepare(stack, settings, bootstrap_servers)
        await _start_api(stack, settings, bootstrap_servers)
        await _until_stopped()


async def run_worker(settings: Settings) -> None:
    """The sink agent alone, against the configured Kafka and ClickHouse."""
    bootstrap_servers = _required_bootstrap_servers(settings, "worker")
    async with AsyncExitStack() as stack:
        await _prepare(stack, settings, bootstrap_servers)
        await _start_sink(stack, settings, bootstrap_servers)
        await _until_stopped()


async def run_migrations(settings: Settings) -> None:
    """Apply the ClickHouse migrations that are not applied yet."""
    clickhouse = connect(
        url=settings.resolved_clickhouse_url, database=settings.clickhouse_database
    )
    try:
        applied = await migrate(clickhouse)
    finally:
        await clickhouse.close()
    print(f"{len(applied)} migration(s) applied")


async def _prepare(
    stack: AsyncExitStack, settings: Settings, bootstrap_servers: str
) -> None:
    for topic in (settings.kafka_topic, settings.dead_letter_topic):
        await ensure_topic(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
    clickhouse = await _open_clickhouse(stack, settings)
    await migrate(clickhouse)


async def _open_clickhouse(stack: AsyncExitStack, settings: Settings) -> ClickHouse:
    clickhouse = connect(
        url=settings.resolved_clickhouse_url, database=settings.clickhouse_database
    )
    stack.push_async_callback(clickhouse.close)
    return clickhouse


async def _start_sink(
    stack: AsyncExitStack, settings: Settings, bootstrap_servers: str
) -> None:
    # Its own connection, so inserts never queue behind the API's queries.
    clickhouse = await _open_clickhouse(stack, settings)
    producer = await _start_producer(stack, settings, bootstrap_servers)
    app, _ = create_sink_app(
        settings=settings,
        bootstrap_servers=bootstrap_servers,
        clickhouse=clickhouse,
        dead_letters=DeadLetterTopic(
            producer=producer, topic=settings.dead_letter_topic
        ),
    )
    await app.start()
    stack.push_async_callback(app.stop)
    logger.info("Sink agent consuming %s", settings.kafka_topic)


async def _start_api(
    stack: AsyncExitStack, settings: Settings, bootstrap_servers: str
) -> None:
    clickhouse = await _open_clickhouse(stack, settings)
    producer = await _start_producer(stack, settings, bootstrap_servers)
    publisher = KafkaPublisher(
        producer=producer,
        topic=settings.kafka_topic,
        timeout_s=settings.kafka_produce_timeout_s,
    )
    app = create_app(settings=settings, clickhouse=clickhouse, publisher=publisher)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Cleanup stops accepting, then waits for in-flight requests.
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    logger.info("API listening on http://%s:%d", settings.http_host, settings.http_port)


async def _start_producer(
    stack: AsyncExitStack, settings: Settings, bootstrap_servers: str
) -> AIOKafkaProducer:
    producer = create_producer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    stack.push_async_callback(
        stop_producer, producer, timeout_s=settings.kafka_produce_timeout_s
    )
    return producer


def _required_bootstrap_servers(settings: Settings, command: str) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError(
            f"`{command}` needs ANALYTICS_KAFKA_BOOTSTRAP_SERVERS; "
            "`run` is the command that starts a local broker"
        )
    return settings.kafka_bootstrap_servers


async def _until_stopped() -> None:
    """Return on SIGINT or SIGTERM; the caller's exit stack then shuts down."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopped.set)
    await stopped.wait()
    logger.info("Stopping: finishing requests and flushing the current batch")


def _fetch_kafka(settings: Settings) -> None:
    print(fetch_kafka(settings.kafka_cache_dir))


def _export_schemas(settings: Settings) -> None:
    for path in export_schemas():
        print(path)


_COMMANDS: dict[str, tuple[str, Callable[[Settings], Any]]] = {
    "run": ("API and sink agent in one process, with a local Kafka", run_local),
    "api": ("the HTTP API alone", run_api),
    "worker": ("the Faust sink agent alone", run_worker),
    "migrate": ("apply pending ClickHouse migrations", run_migrations),
    "export-schemas": ("write the contract's JSON Schema files", _export_schemas),
    "fetch-kafka": ("download the local Kafka broker's jars", _fetch_kafka),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gateway-analytics`` console script."""
    parser = argparse.ArgumentParser(prog="gateway-analytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in _COMMANDS.items():
        commands.add_parser(name, help=help_text)
    arguments = parser.parse_args(argv)

    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        result = _COMMANDS[arguments.command][1](settings)
        if isinstance(result, Coroutine):
            asyncio.run(result)
    except AnalyticsError as error:
        print(f"gateway-analytics {arguments.command}: {error}", file=sys.stderr)
        return 1
    return 0
