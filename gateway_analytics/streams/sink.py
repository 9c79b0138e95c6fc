"""The sink: consumed Kafka records into ``analytics_events``, exactly once.

Three checks make redelivery harmless:

* every row keeps its Kafka partition and offset, and on assignment the sink
  resumes each partition after the highest offset stored for it, skipping
  anything at or below it that is delivered again;
* a batch is inserted as one part with a token naming its positions, so a
  retried insert never stores it twice;
* an ``event_id`` already stored within the deduplication window is a
  client's retry and is dropped. One event always lands on one partition (it
  is keyed by pod or by its own id), so one sink sees both copies in order.

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
    ConsumedRecord,
    insert_records,
    stored_event_ids,
    stored_offsets,
)
from gateway_analytics.clickhouse.rollups import catch_up_rollups
from gateway_analytics.shared.errors import StorageError
from gateway_analytics.shared.events import EventRecord
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
        table: str = TABLE,
        keep: Callable[[EventRecord], bool] | None = None,
        retry_backoff_s: float = 0.5,
        max_retry_backoff_s: float = 30.0,
    ) -> None:
        self._clickhouse = clickhouse
        self._dead_letters = dead_letters
        self._dedup_window = timedelta(seconds=dedup_window_s)
        self._table = table
        self._keep = keep
        self._retry_backoff_s = retry_backoff_s
        self._max_retry_backoff_s = max_retry_backoff_s
        self._stored_offsets: dict[int, int] = {}
        self.inserted = 0
        self.duplicates = 0
        self.dead_letters = 0

    async def resume_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """Where each partition must be read from: after its highest stored row.

        A partition without rows is read from its start (offset 0, which the
        consumer moves to the earliest retained record). Call it whenever
        partitions are assigned: another sink may have stored rows meanwhile.
        For the live table it first lets the count rollups catch up with what
        is stored, in case a crash cut off their part of the last insert.
        """
        if self._table == TABLE:
            await self._until_done(
                lambda: catch_up_rollups(self._clickhouse, partitions),
                "catch_up_rollups",
            )
        stored = await self._until_done(
            lambda: stored_offsets(self._clickhouse, table=self._table),
            "read_offsets",
        )
        for partition in partitions:
            if partition in stored:
                self._stored_offsets[partition] = stored[partition]
            else:
                self._stored_offsets.pop(partition, None)
        return {p: stored[p] + 1 if p in stored else 0 for p in partitions}

    async def write(self, messages: Sequence[Any]) -> None:
        """Store the events of ``messages``, Kafka messages with raw values."""
        records = []
        for message in messages:
            record = await self._decode(message)
            if record is not None and (self._keep is None or self._keep(record.record)):
                records.append(record)
        records = await self._drop_duplicates(self._drop_stored(records))
        if records:
            started = time.perf_counter()
            await self._until_done(
                lambda: insert_records(self._clickhouse, records, table=self._table),
                "insert",
            )
            elapsed_s = time.perf_counter() - started
            logger.info(
                "Flushed %d events to ClickHouse in %.0f ms",
                len(records),
                elapsed_s * 1000,
            )
            SINK_BATCH_EVENTS.observe(len(records))
            SINK_INSERT_SECONDS.observe(elapsed_s)
            SINK_EVENTS.labels("stored").inc(len(records))
            self.inserted += len(records)
        for message in messages:
            self._stored_offsets[message.partition] = max(
                message.offset, self._stored_offsets.get(message.partition, -1)
            )

    async def _decode(self, message: Any) -> ConsumedRecord | None:
        try:
            record = EventRecord.model_validate_json(message.value or b"")
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
            return None
        return ConsumedRecord(record, message.partition, message.offset)

    def _drop_stored(self, records: list[ConsumedRecord]) -> list[ConsumedRecord]:
        fresh = [
            r for r in records if r.offset > self._stored_offsets.get(r.partition, -1)
        ]
        if len(fresh) < len(records):
            logger.info("Skipped %d records already stored", len(records) - len(fresh))
        return fresh

    async def _drop_duplicates(
        self, records: list[ConsumedRecord]
    ) -> list[ConsumedRecord]:
        if not records:
            return records
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
        unique = []
        for consumed in records:
            event_id, received_at = _event_id(consumed), consumed.record.received_at
            previous = seen.get(event_id)
            if previous is not None and previous >= received_at - self._dedup_window:
                continue
            seen[event_id] = received_at
            unique.append(consumed)
        if len(unique) < len(records):
            SINK_EVENTS.labels("duplicate").inc(len(records) - len(unique))
            self.duplicates += len(records) - len(unique)
            logger.info("Dropped %d retried events", len(records) - len(unique))
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


def _event_id(consumed: ConsumedRecord) -> UUID:
    event_id = consumed.record.event.event_id
    assert event_id is not None, "EventRecord guarantees a resolved event_id"
    return event_id


def _utc(moment: datetime) -> datetime:
    """ClickHouse returns UTC times without a zone; give them one."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
