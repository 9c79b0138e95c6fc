"""The sink: consumed Kafka records into ``analytics_events``, exactly once.

Three checks make redelivery harmless:

* every row keeps the partition and offset of the Kafka record it came in
  (one record carries several events, which are always stored together),
  and on assignment the sink resumes each partition after the highest
  offset stored for it, skipping anything at or below it that is delivered
  again;
* a batch is inserted as one part with a token naming its positions, so a
  retried insert never stores it twice;
* an ``event_id`` already stored within the deduplication window is a
  client's retry and is dropped. One event always lands on one partition (it
  is keyed by pod or by its own id), so one sink sees both copies in order.

A Kafka record whose header says the API validated its events and minted
all their ids can repeat nothing but itself, which the offsets already
catch; unless a replay filters events, it is stored as it came, not decoded.
Should ClickHouse refuse it after all, the batch is decoded and made again,
and a record that is not the contract goes to the dead letters as any other.

Limits: two sinks that both believe they own a partition (a stalled member
that has not yet noticed the rebalance) can each insert the same batch; and
retries further apart than the window are counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import (
    TABLE,
    Consumed,
    ConsumedRecord,
    ConsumedValue,
    TopicValue,
    insert_records,
    stored_event_ids,
    stored_events,
    stored_offsets,
)
from gateway_analytics.clickhouse.rollups import catch_up_rollups
from gateway_analytics.shared.errors import StorageError
from gateway_analytics.shared.events import (
    EventRecord,
    decode_value,
    fresh_events,
    written_event_ids,
)
from gateway_analytics.shared.metrics import (
    SINK_BATCH_EVENTS,
    SINK_EVENTS,
    SINK_INSERT_SECONDS,
    SINK_RETRIES,
)
from gateway_analytics.streams.dead_letters import DeadLetterSink

logger = logging.getLogger(__name__)


class EventSink:
    """Decodes consumed records and stores each batch once.

    Args:
        clickhouse: the database holding the events table.
        dead_letters: receives records that are not the event contract.
        dedup_window_s: how far apart two receipts of one event_id may be
            for the second to count as a retry.
        batch_size: most events in one insert; the events of one message
            are never split, so a message larger than this is one insert.
        table: the events table; a replay points it at a fresh table.
        keep: when given, only records it accepts are stored; the others are
            passed over silently (a replay of a time range uses it).
        retry_backoff_s: first wait after a failed insert; it doubles up to
            ``max_retry_backoff_s``.
    """

    def __init__(
        self,
        *,
        clickhouse: ClickHouse,
        dead_letters: DeadLetterSink,
        dedup_window_s: float,
        batch_size: int = 50_000,
        table: str = TABLE,
        keep: Callable[[EventRecord], bool] | None = None,
        retry_backoff_s: float = 0.5,
        max_retry_backoff_s: float = 30.0,
    ) -> None:
        self._clickhouse = clickhouse
        self._dead_letters = dead_letters
        self._dedup_window = timedelta(seconds=dedup_window_s)
        self._batch_size = batch_size
        self._table = table
        self._keep = keep
        self._retry_backoff_s = retry_backoff_s
        self._max_retry_backoff_s = max_retry_backoff_s
        self._stored_offsets: dict[int, int] = {}
        # Faust may deliver a newly assigned partition's records while
        # resume_offsets is still running; writes wait for it, and the two
        # never interleave their reads and inserts.
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._storing = asyncio.Lock()
        # The partitions this sink may store; None until the first
        # assignment means all of them (a replay is never assigned any).
        self._owned: set[int] | None = None
        self.inserted = 0
        self.duplicates = 0
        self.dead_letters = 0

    async def resume_offsets(
        self,
        partitions: Sequence[int],
        seek: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> dict[int, int]:
        """Where each partition must be read from: after its highest stored row.

        A partition without rows is read from its start (offset 0, which the
        consumer moves to the earliest retained record). Call it whenever
        partitions are assigned: another sink may have stored rows meanwhile.
        ``seek`` is called with each partition and offset as soon as they are
        known, since the consumer is already fetching. For the live table the
        count rollups then catch up with what is stored, in case a crash cut
        off their part of the last insert; writes wait until that is done.
        """
        self._resumed.clear()
        try:
            async with self._storing:
                self._owned = (self._owned or set()) | set(partitions)
                stored = await self._until_done(
                    lambda: stored_offsets(self._clickhouse, table=self._table),
                    "read_offsets",
                )
                for partition in partitions:
                    if partition in stored:
                        self._stored_offsets[partition] = stored[partition]
                    else:
                        self._stored_offsets.pop(partition, None)
                    if seek is not None:
                        await seek(partition, stored.get(partition, -1) + 1)
                if self._table == TABLE:
                    await self._until_done(
                        lambda: catch_up_rollups(self._clickhouse, partitions),
                        "catch_up_rollups",
                    )
        finally:
            self._resumed.set()
        return {p: stored.get(p, -1) + 1 for p in partitions}

    async def release(self, partitions: Sequence[int]) -> None:
        """Stop storing ``partitions``; return once no insert of theirs is running.

        Call it when partitions are revoked, before the group hands them to
        another member: that member reads where to resume from ClickHouse,
        so this sink's last insert must have landed by then, and records of
        these partitions still buffered here must not be stored later.
        """
        async with self._storing:
            if self._owned is not None:
                self._owned -= set(partitions)

    async def write(self, messages: Sequence[Any]) -> None:
        """Store the events of ``messages``, Kafka messages with raw values
        and their headers.

        The events go in as few inserts as ``batch_size`` allows. A message's
        events always share one insert, and inserts follow the messages'
        order, so a partition's stored rows never skip ahead of a message
        that is not yet stored.
        """
        await self._resumed.wait()
        async with self._storing:
            messages = self._drop_stored(messages)
            batch: list[Consumed] = []
            batch_events = 0
            for message in messages:
                items = await self._consume(message)
                events = stored_events(items)
                if batch and batch_events + events > self._batch_size:
                    await self._store(batch, messages)
                    batch, batch_events = [], 0
                batch.extend(items)
                batch_events += events
            await self._store(batch, messages)
            for message in messages:
                self._stored_offsets[message.partition] = max(
                    message.offset, self._stored_offsets.get(message.partition, -1)
                )

    async def _store(self, batch: list[Consumed], messages: Sequence[Any]) -> None:
        """Insert ``batch``, whose items came from ``messages``."""
        items = await self._drop_duplicates(batch, messages)
        if not items:
            return
        started = time.perf_counter()
        items = await self._insert(items, messages)
        elapsed_s = time.perf_counter() - started
        events = stored_events(items)
        if not events:
            return
        logger.info(
            "Flushed %d events to ClickHouse in %.0f ms", events, elapsed_s * 1000
        )
        SINK_BATCH_EVENTS.observe(events)
        SINK_INSERT_SECONDS.observe(elapsed_s)
        SINK_EVENTS.labels("stored").inc(events)
        self.inserted += events

    async def _insert(
        self, items: list[Consumed], messages: Sequence[Any]
    ) -> list[Consumed]:
        """Insert ``items``, retrying until it succeeds; what was inserted.

        A batch holding whole values gets one try as it is. Should it fail,
        its values are decoded, in case ClickHouse refused one of them, and
        the batch is retried as events.
        """
        if any(isinstance(item, ConsumedValue) for item in items):
            try:
                await insert_records(self._clickhouse, items, table=self._table)
                return items
            except StorageError as error:
                SINK_RETRIES.labels("insert").inc()
                logger.warning("Decoding a batch ClickHouse refused: %s", error)
                items = await self._decode_values(items, messages)
                if not items:
                    return items
        await self._until_done(
            lambda: insert_records(self._clickhouse, items, table=self._table),
            "insert",
        )
        return items

    async def _consume(self, message: Any) -> list[Consumed]:
        """What of ``message`` to store: its value whole, or its events."""
        fresh = fresh_events(message.headers)
        if fresh is not None and self._keep is None and message.value:
            value = TopicValue(message.value, fresh)
            return [ConsumedValue(value, message.partition, message.offset)]
        return [
            consumed
            for consumed in await self._decode(message)
            if self._keep is None or self._keep(consumed.record)
        ]

    async def _decode_values(
        self, items: list[Consumed], messages: Sequence[Any]
    ) -> list[Consumed]:
        """``items`` with every value decoded into the events it holds."""
        by_position = {(m.partition, m.offset): m for m in messages}
        decoded: list[Consumed] = []
        for item in items:
            if isinstance(item, ConsumedValue):
                message = by_position[(item.partition, item.offset)]
                decoded.extend(await self._decode(message))
            else:
                decoded.append(item)
        return decoded

    async def _decode(self, message: Any) -> list[ConsumedRecord]:
        try:
            records = decode_value(message.value or b"")
        except ValidationError as error:
            reason = "; ".join(
                f"{'.'.join(map(str, issue['loc']))}: {issue['msg']}"
                for issue in error.errors(include_url=False)[:5]
            )
            logger.warning(
                "Dead-lettering the record at partition %d offset %d: %s",
                message.partition,
                message.offset,
                reason,
            )
            await self._until_done(
                lambda: self._dead_letters.send(message, reason),
                "dead_letter",
            )
            SINK_EVENTS.labels("dead_letter").inc()
            self.dead_letters += 1
            return []
        data = message.value or b""
        # A bare object is one record alone, not the array the intake reads.
        value = TopicValue(data, len(records)) if data.lstrip()[:1] == b"[" else None
        return [
            ConsumedRecord(record, message.partition, message.offset, value)
            for record in records
        ]

    def _drop_stored(self, messages: Sequence[Any]) -> list[Any]:
        """The messages not stored yet, of partitions this sink owns.

        A seek after assignment can deliver a message again within the same
        batch; only its first copy is kept.
        """
        highest = dict(self._stored_offsets)
        fresh = []
        for message in messages:
            if self._owned is not None and message.partition not in self._owned:
                continue
            if message.offset <= highest.get(message.partition, -1):
                continue
            highest[message.partition] = message.offset
            fresh.append(message)
        if len(fresh) < len(messages):
            logger.info("Skipped %d records already stored", len(messages) - len(fresh))
        return fresh

    async def _drop_duplicates(
        self, items: list[Consumed], messages: Sequence[Any]
    ) -> list[Consumed]:
        """``items`` without the events that repeat a stored or earlier one.

        Only decoded events can be retries: a fresh value's ids are new. But
        a client may send one of them again once the API has answered with
        it; should that copy share a batch with the fresh value, the batch's
        values are decoded so that both are weighed as any two events are.
        """
        records = [item for item in items if isinstance(item, ConsumedRecord)]
        if not records:
            return items
        fresh_ids = _ids_in_fresh_values(items)
        if fresh_ids and any(str(_event_id(r)) in fresh_ids for r in records):
            items = await self._decode_values(items, messages)
            records = [item for item in items if isinstance(item, ConsumedRecord)]
        earliest = min(_utc(r.record.received_at) for r in records)
        stored = await self._until_done(
            lambda: stored_event_ids(
                self._clickhouse,
                [_event_id(r) for r in records],
                received_since=earliest - self._dedup_window,
                table=self._table,
            ),
            "read_event_ids",
        )
        seen: dict[UUID, datetime] = {k: _utc(v) for k, v in stored.items()}
        unique: list[Consumed] = []
        for item in items:
            if isinstance(item, ConsumedValue):
                unique.append(item)
                continue
            event_id, received_at = _event_id(item), item.record.received_at
            previous = seen.get(event_id)
            if previous is not None and previous >= received_at - self._dedup_window:
                continue
            seen[event_id] = received_at
            unique.append(item)
        dropped = len(items) - len(unique)
        if dropped:
            SINK_EVENTS.labels("duplicate").inc(dropped)
            self.duplicates += dropped
            logger.info("Dropped %d retried events", dropped)
        return unique

    async def _until_done(
        self, action: Callable[[], Awaitable[Any]], operation: str
    ) -> Any:
        """Run ``action`` until it succeeds; the partition waits meanwhile.

        Consumption stops while this waits, so nothing is skipped; the wait
        doubles after each failure up to the cap.
        """
        backoff_s = self._retry_backoff_s
        while True:
            try:
                return await action()
            except (StorageError, KafkaError) as error:
                SINK_RETRIES.labels(operation).inc()
                logger.warning(
                    "Failed %s, retrying in %.1f s: %s", operation, backoff_s, error
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_retry_backoff_s)


def _ids_in_fresh_values(items: Sequence[Consumed]) -> set[str]:
    """The ids, in text, of the events in the fresh values among ``items``."""
    return {
        event_id
        for item in items
        if isinstance(item, ConsumedValue)
        for event_id in written_event_ids(item.value.data)
    }


def _event_id(consumed: ConsumedRecord) -> UUID:
    event_id = consumed.record.event.event_id
    assert event_id is not None, "EventRecord guarantees a resolved event_id"
    return event_id


def _utc(moment: datetime) -> datetime:
    """ClickHouse returns UTC times without a zone; give them one."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
