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
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from aiokafka import AIOKafkaProducer
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from gateway_analytics.clickhouse.client import ClickHouse, connect
from gateway_analytics.clickhouse.migrations import migrate
from gateway_analytics.clickhouse.rollups import catch_up_rollups
from gateway_analytics.http.access import access_middleware
from gateway_analytics.http.app import create_app
from gateway_analytics.http.health import add_ops_routes, readiness_checks
from gateway_analytics.shared.errors import AnalyticsError, ConfigurationError
from gateway_analytics.shared.events.schema_files import export_schemas
from gateway_analytics.shared.kafka import create_producer, ensure_topic, stop_producer
from gateway_analytics.shared.local_kafka import (
    LocalKafka,
    fetch_kafka,
    running_broker,
)
from gateway_analytics.shared.logs import configure_logging
from gateway_analytics.shared.progress import Progress
from gateway_analytics.shared.publisher import KafkaPublisher
from gateway_analytics.shared.settings import Settings, load_settings
from gateway_analytics.streams.app import create_sink_app
from gateway_analytics.streams.backfill import backfill
from gateway_analytics.streams.dead_letters import DeadLetterTopic
from gateway_analytics.streams.replay import TimeRange, rebuild

logger = logging.getLogger(__name__)


async def run_local(settings: Settings) -> None:
    """API and sink agent in one process, with a local broker unless one is set."""
    async with AsyncExitStack() as stack:
        bootstrap_servers = await _kafka(stack, settings, reuse_running=False)
        clickhouse = await _open_clickhouse(stack, settings)
        await _prepare(settings, bootstrap_servers, clickhouse)
        # The API first: the sink's start waits for its consumer group, and
        # accepting events must not wait for that.
        await _start_api(stack, settings, bootstrap_servers, clickhouse)
        await _start_sink(stack, settings, bootstrap_servers)
        await _until_stopped()


async def run_api(settings: Settings) -> None:
    """The API alone, against the configured Kafka and ClickHouse."""
    bootstrap_servers = _required_bootstrap_servers(settings, "api")
    async with AsyncExitStack() as stack:
        clickhouse = await _open_clickhouse(stack, settings)
        await _prepare(settings, bootstrap_servers, clickhouse)
        await _start_api(stack, settings, bootstrap_servers, clickhouse)
        await _until_stopped()


async def run_worker(settings: Settings) -> None:
    """The sink agent alone, against the configured Kafka and ClickHouse."""
    bootstrap_servers = _required_bootstrap_servers(settings, "worker")
    async with AsyncExitStack() as stack:
        clickhouse = await _open_clickhouse(stack, settings)
        await _prepare(settings, bootstrap_servers, clickhouse)
        ops = web.Application(middlewares=[access_middleware])
        add_ops_routes(
            ops,
            checks=readiness_checks(
                clickhouse=clickhouse,
                bootstrap_servers=bootstrap_servers,
                topic=settings.kafka_topic,
            ),
        )
        await _serve(stack, ops, settings, settings.worker_http_port)
        await _start_sink(stack, settings, bootstrap_servers)
        await _until_stopped()


async def run_migrations(settings: Settings) -> None:
    """Apply the ClickHouse migrations that are not applied yet."""
    async with AsyncExitStack() as stack:
        clickhouse = await _open_clickhouse(stack, settings)
        print(f"{await _migrate(clickhouse)} migration(s) applied")


async def _prepare(
    settings: Settings, bootstrap_servers: str, clickhouse: ClickHouse
) -> None:
    """Create the topics when missing and apply pending migrations.

    ``clickhouse`` stays open for the service: closing the embedded engine's
    last connection shuts the engine down, and opening it again costs time
    at every start.
    """
    for topic in (settings.kafka_topic, settings.dead_letter_topic):
        await ensure_topic(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
    await _migrate(clickhouse)


async def _migrate(clickhouse: ClickHouse) -> int:
    applied = await migrate(clickhouse)
    if applied:
        # A new rollup starts empty; count what is already stored.
        await catch_up_rollups(clickhouse)
    return len(applied)


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
    stack: AsyncExitStack,
    settings: Settings,
    bootstrap_servers: str,
    clickhouse: ClickHouse,
) -> None:
    producer = await _start_producer(stack, settings, bootstrap_servers)
    app = create_app(
        settings=settings,
        clickhouse=clickhouse,
        publisher=_publisher(settings, producer),
        checks=readiness_checks(
            clickhouse=clickhouse,
            bootstrap_servers=bootstrap_servers,
            topic=settings.kafka_topic,
        ),
    )
    await _serve(stack, app, settings, settings.http_port)
    logger.info("API listening on http://%s:%d", settings.http_host, settings.http_port)


async def _serve(
    stack: AsyncExitStack, app: web.Application, settings: Settings, port: int
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Cleanup stops accepting, then lets in-flight requests finish within
    # the shutdown timeout.
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(
        runner, settings.http_host, port, shutdown_timeout=settings.shutdown_timeout_s
    )
    await site.start()


def _publisher(settings: Settings, producer: AIOKafkaProducer) -> KafkaPublisher:
    return KafkaPublisher(
        producer=producer,
        topic=settings.kafka_topic,
        timeout_s=settings.kafka_produce_timeout_s,
    )


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


async def run_replay(settings: Settings, arguments: argparse.Namespace) -> None:
    """Rebuild the events table (or a time range of it) from the topic."""
    time_range = TimeRange(since=arguments.since, until=arguments.until)
    if time_range.since and time_range.until and time_range.since >= time_range.until:
        raise ConfigurationError("--since must be before --until")
    async with AsyncExitStack() as stack:
        bootstrap_servers = await _kafka(stack, settings, reuse_running=True)
        clickhouse = await _open_clickhouse(stack, settings)
        await migrate(clickhouse)
        report = await rebuild(
            clickhouse=clickhouse,
            bootstrap_servers=bootstrap_servers,
            topic=settings.kafka_topic,
            time_range=time_range,
            batch_size=settings.sink_batch_size,
            dedup_window_s=settings.dedup_window_s,
            catch_up_delay_s=settings.sink_flush_interval_s * 2,
        )
    print(
        f"replayed {report.records_read} records: {report.events_stored} events "
        f"stored, {report.duplicates} retried duplicates and "
        f"{report.undecodable} undecodable records left out, {report.rows_kept} "
        f"rows outside the range kept, {report.rows_caught_up} live rows caught up"
    )


def run_backfill(settings: Settings, arguments: argparse.Namespace) -> int:
    """Publish the events of a newline-delimited JSON file (or stdin)."""
    if arguments.file == "-":
        return asyncio.run(_backfill(settings, sys.stdin, total=None))
    path = Path(arguments.file)
    try:
        with path.open("rb") as counted:
            total = sum(1 for _ in counted)
        with path.open(encoding="utf-8") as lines:
            return asyncio.run(_backfill(settings, lines, total=total))
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from error


async def _backfill(settings: Settings, lines: TextIO, *, total: int | None) -> int:
    async with AsyncExitStack() as stack:
        bootstrap_servers = await _kafka(stack, settings, reuse_running=True)
        producer = await _start_producer(stack, settings, bootstrap_servers)
        report = await backfill(
            lines,
            publisher=_publisher(settings, producer),
            batch_size=settings.max_events_per_request,
            progress=Progress("backfill", total=total),
            errors=sys.stderr,
        )
    print(
        f"published {report.published} events; "
        f"{len(report.bad_lines)} bad lines left out"
    )
    return 1 if report.bad_lines else 0


async def _kafka(
    stack: AsyncExitStack, settings: Settings, *, reuse_running: bool
) -> str:
    """The configured Kafka, else (when allowed) the running local one, else a
    local broker started here and stopped when ``stack`` closes."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    kafka_dir = settings.data_dir / "kafka"
    running = running_broker(kafka_dir) if reuse_running else None
    if running:
        return running
    kafka = LocalKafka(data_dir=kafka_dir, cache_dir=settings.kafka_cache_dir)
    await stack.enter_async_context(kafka)
    return kafka.bootstrap_servers


def _fetch_kafka(settings: Settings) -> None:
    print(fetch_kafka(settings.kafka_cache_dir))


def _export_schemas(settings: Settings) -> None:
    for path in export_schemas():
        print(path)


def _instant(text: str) -> datetime:
    try:
        return _INSTANT.validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time with a zone, "
            "such as 2024-05-20T00:00:00Z"
        ) from None


_INSTANT: TypeAdapter[AwareDatetime] = TypeAdapter(AwareDatetime)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway-analytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    simple: dict[str, tuple[str, Callable[..., Any]]] = {
        "run": ("API and sink agent in one process, with a local Kafka", run_local),
        "api": ("the HTTP API alone", run_api),
        "worker": ("the Faust sink agent alone", run_worker),
        "migrate": ("apply pending ClickHouse migrations", run_migrations),
        "export-schemas": ("write the contract's JSON Schema files", _export_schemas),
        "fetch-kafka": ("download the local Kafka broker's jars", _fetch_kafka),
    }
    for name, (help_text, handler) in simple.items():
        commands.add_parser(name, help=help_text).set_defaults(
            handler=lambda settings, _, run=handler: run(settings)
        )

    replay = commands.add_parser(
        "replay", help="rebuild ClickHouse from the topic, swapped in atomically"
    )
    replay.add_argument("--rebuild", action="store_true", required=True)
    replay.add_argument("--since", type=_instant, help="first occurred_at replayed")
    replay.add_argument("--until", type=_instant, help="occurred_at replayed up to")
    replay.set_defaults(handler=run_replay)

    backfill_parser = commands.add_parser(
        "backfill", help="publish newline-delimited JSON events from a file"
    )
    backfill_parser.add_argument("file", help="path of the file, or - for stdin")
    backfill_parser.set_defaults(handler=run_backfill)
    return parser


def _tune_garbage_collection() -> None:
    """Collect garbage less often than Python's defaults.

    The sink and the API keep many objects alive (Faust's buffers, events in
    flight), and the default thresholds rescan them every few hundred
    allocations; that cost the sink a third of its throughput. Objects that
    exist once startup has imported everything are never collected at all.
    """
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gateway-analytics`` console script."""
    arguments = _parser().parse_args(argv)
    _tune_garbage_collection()
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        result = arguments.handler(settings, arguments)
        if isinstance(result, Coroutine):
            result = asyncio.run(result)
    except AnalyticsError as error:
        print(f"gateway-analytics {arguments.command}: {error}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
