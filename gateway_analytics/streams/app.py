"""The Faust application that runs the ClickHouse sink agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set
from contextlib import aclosing
from typing import Any

import faust
from faust.tables import TableManager

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.shared.events import fresh_events
from gateway_analytics.shared.metrics import CONSUMER_LAG
from gateway_analytics.shared.settings import Settings
from gateway_analytics.streams.dead_letters import DeadLetterSink
from gateway_analytics.streams.sink import EventSink
from gateway_analytics.streams.takes import takes

logger = logging.getLogger(__name__)


class TablelessManager(TableManager):
    """Faust's table manager without the second it waits, at every start, for
    tables declared late. This app declares none, and the wait held up each
    worker start, and so each restart after a crash or a deploy, by a second.
    """

    async def on_start(self) -> None:
        await self._update_channels()
        await self.recovery.start()


def create_sink_app(
    *,
    settings: Settings,
    bootstrap_servers: str,
    clickhouse: ClickHouse,
    dead_letters: DeadLetterSink,
) -> tuple[faust.App, EventSink]:
    """A Faust app whose one agent stores the events topic in ClickHouse.

    Start it with ``await app.start()`` and stop it with ``await app.stop()``
    inside a running event loop; the caller owns ``clickhouse`` and the
    dead-letter sink.
    """
    app = faust.App(
        settings.consumer_group,
        broker=f"kafka://{bootstrap_servers}",
        web_enabled=False,
        datadir=str(settings.data_dir / "faust"),
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        # Faust's default of 60 s would keep a restarted worker waiting that
        # long for the group to forget the member that crashed.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        TableManager=TablelessManager,
    )
    topic = app.topic(
        settings.kafka_topic, key_serializer="raw", value_serializer="raw"
    )
    sink = EventSink(
        clickhouse=clickhouse,
        dead_letters=dead_letters,
        dedup_window_s=settings.dedup_window_s,
        batch_size=settings.sink_batch_size,
    )

    # Faust queues at most stream_buffer_maxsize records for the stream. A
    # take larger than that queue could not fill from it while the previous
    # take is stored, so a take asks for a quarter of the queue.
    take_records = max(1, app.conf.stream_buffer_maxsize // 4)

    # One actor: with more, faust-streaming may commit an offset while an
    # earlier event of the same partition is still being inserted.
    @app.agent(topic, name="clickhouse-sink", concurrency=1)
    async def clickhouse_sink(stream: Any) -> None:
        # A take's offsets are acknowledged only when the loop asks for the
        # next take, that is after the insert below returned. A take counts
        # Kafka records, which carry several events each, and ends before
        # the events its records announce pass the batch size, so that a
        # backlog goes in full inserts; the sink still splits a take whose
        # records had to be decoded to be counted.
        async with aclosing(
            takes(
                stream,
                max_events=take_records,
                within_s=settings.sink_flush_interval_s,
                max_rows=settings.sink_batch_size,
                rows_in=_rows_in,
            )
        ) as taken:
            async for events in taken:
                messages = [event.message for event in events]
                await _finish_even_if_cancelled(sink.write(messages))
                _record_lag(app, messages)

    # Faust types receivers loosely (*args); this one takes the assigned set.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def resume_after_stored_rows(
        sender: faust.App, assigned: Set[Any], **_: Any
    ) -> None:
        # ClickHouse, not the committed offset, says what is stored: a crash
        # between an insert and its commit must not insert the batch again.
        ours = {
            tp.partition: tp for tp in assigned if tp.topic == topic.get_topic_name()
        }

        async def seek(partition: int, offset: int) -> None:
            # seek_wait, not seek: Faust's seek moves the position from this
            # thread while the consumer's own thread may be handing out the
            # fetched records it discards, and the fetcher then crashes.
            await sender.consumer.seek_wait({ours[partition]: offset})
            logger.info(
                "Partition %d resumes at offset %d, after its stored rows",
                partition,
                offset,
            )

        await sink.resume_offsets(sorted(ours), seek)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def finish_revoked_partitions(
        sender: faust.App, revoked: Set[Any], **_: Any
    ) -> None:
        # The group waits for this before another member takes them over.
        await sink.release(
            sorted(tp.partition for tp in revoked if tp.topic == topic.get_topic_name())
        )

    return app, sink


def _rows_in(event: Any) -> int:
    """The rows a Kafka record will make: the count its header announces, or
    one when only decoding it would tell."""
    return fresh_events(event.message.headers) or 1


def _record_lag(app: faust.App, messages: list[Any]) -> None:
    """Set the lag gauge of each partition in the batch just stored."""
    last_offsets = {message.tp: message.offset for message in messages}
    # A rebalance during the insert may have taken a partition away; the
    # consumer knows no highwater for it any more.
    assigned = app.consumer.assignment()
    for tp, offset in last_offsets.items():
        if tp not in assigned:
            continue
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            CONSUMER_LAG.labels(str(tp.partition)).set(max(highwater - offset - 1, 0))


async def _finish_even_if_cancelled(work: Any) -> None:
    """Run ``work`` to the end even when the agent is cancelled at shutdown.

    Faust stops agents by cancelling them; an insert cut short would leave its
    batch acknowledged (a take is acknowledged in a ``finally``) but not
    stored.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
