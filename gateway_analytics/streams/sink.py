"""The sink: consumed Kafka records into ``analytics_events``, batch by batch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.errors import StorageError
from gateway_analytics.shared.events import EventRecord

logger = logging.getLogger(__name__)


class EventSink:
    """Decodes consumed records and inserts each batch into ClickHouse.

    A batch is retried until its insert succeeds, so the caller acknowledges
    its offsets only once the rows are stored.

    Args:
        clickhouse: the database holding ``analytics_events``.
        retry_backoff_s: first wait after a failed insert; it doubles up to
            ``max_retry_backoff_s``.
    """

    def __init__(
        self,
        *,
        clickhouse: ClickHouse,
        retry_backoff_s: float = 0.5,
        max_retry_backoff_s: float = 30.0,
    ) -> None:
        self._clickhouse = clickhouse
        self._retry_backoff_s = retry_backoff_s
        self._max_retry_backoff_s = max_retry_backoff_s
        self.inserted = 0
        self.undecodable = 0

    async def write(self, messages: Sequence[Any]) -> None:
        """Insert the events of ``messages``, Kafka messages with raw values."""
        records = [
            record for record in map(self._decode, messages) if record is not None
        ]
        if records:
            started = time.perf_counter()
            await self._insert_until_stored(records)
            logger.info(
                "Flushed %d events to ClickHouse in %.0f ms",
                len(records),
                (time.perf_counter() - started) * 1000,
            )
        self.inserted += len(records)

    def _decode(self, message: Any) -> ConsumedRecord | None:
        try:
            record = EventRecord.model_validate_json(message.value)
        except ValidationError as error:
            # Skipped, not stalled on: one bad record must not block the
            # partition behind it.
            self.undecodable += 1
            logger.warning(
                "Skipped undecodable record at partition %d offset %d: %s",
                message.partition,
                message.offset,
                error.errors(include_url=False)[:3],
            )
            return None
        return ConsumedRecord(record, message.partition, message.offset)

    async def _insert_until_stored(self, records: list[ConsumedRecord]) -> None:
        backoff_s = self._retry_backoff_s
        while True:
            try:
                await insert_records(self._clickhouse, records)
                return
            except StorageError as error:
                logger.warning(
                    "Insert of %d events failed, retrying in %.1f s: %s",
                    len(records),
                    backoff_s,
                    error,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_retry_backoff_s)
