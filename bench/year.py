"""A year of generated events, stored through the sink's own insert.

Events go in through ``insert_records`` in batches of the sink's size, each
record with the Kafka partition its pod hashes to and the next offset there,
so the materialized views fill the rollups as they do in production.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiokafka.partitioner import murmur2

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import (
    ArtifactViewed,
    CheckoutStarted,
    Event,
    EventRecord,
    PodEntered,
    SaleCompleted,
)
from gateway_analytics.shared.progress import Progress
from gateway_analytics.shared.settings import Settings

BATCH_EVENTS = Settings.model_fields["sink_batch_size"].default  # the sink's batch
PARTITIONS = 6
YEAR_S = 365 * 24 * 3600

# The mix of event types as cumulative shares: 40% pod_entered, 45%
# artifact_viewed, 10% checkout_started and the remaining 5% sale_completed.
POD_ENTERED, ARTIFACT_VIEWED, CHECKOUT_STARTED = 0.40, 0.85, 0.95
# How often an event other than pod_entered happens in a pod.
IN_A_POD = 0.8


class Year:
    """A year of events ending at ``until``, generated in order of time.

    Events arrive on the topic as they happen, so each batch covers its own
    slice of the year, uniformly; pods and artifacts are picked uniformly,
    which leaves the rollups as little to sum as such data can.

    Args:
        events: how many events the year holds.
        pods: how many pods they name.
        artifacts: how many artifacts they name.
        until: where the year ends, usually now.
        seed: makes the events, and the pods and artifacts asked about, repeat.
    """

    def __init__(
        self, *, events: int, pods: int, artifacts: int, until: datetime, seed: int
    ) -> None:
        self.events = events
        self._random = random.Random(seed)
        self._since_s = until.timestamp() - YEAR_S
        self.pods = [UUID(int=self._random.getrandbits(128)) for _ in range(pods)]
        self.artifacts = [
            UUID(int=self._random.getrandbits(128)) for _ in range(artifacts)
        ]
        # The producer's own partitioner: the pod id's text, murmur2, mod 6.
        self._pod_partitions = [
            (murmur2(str(pod).encode()) & 0x7FFFFFFF) % PARTITIONS for pod in self.pods
        ]
        self._offsets = [0] * PARTITIONS

    def batches(self) -> Iterator[list[ConsumedRecord]]:
        """The events in insert batches of the sink's size, oldest first."""
        for first in range(0, self.events, BATCH_EVENTS):
            yield self._batch(first, min(BATCH_EVENTS, self.events - first))

    def _batch(self, first: int, count: int) -> list[ConsumedRecord]:
        draw, bits, pods = self._random.random, self._random.getrandbits, self.pods
        start_s = self._since_s + YEAR_S * first / self.events
        span_s = YEAR_S * count / self.events
        records = []
        for second in sorted(start_s + draw() * span_s for _ in range(count)):
            at = datetime.fromtimestamp(second, UTC)
            kind, number = draw(), bits(128)
            fields: dict[str, Any] = {"event_id": UUID(int=number), "occurred_at": at}
            # An event without a pod is keyed by its own random id, which
            # spreads over the partitions as evenly as a hash of it would.
            partition = number % PARTITIONS
            if kind < POD_ENTERED or draw() < IN_A_POD:
                index = int(draw() * len(pods))
                fields["pod_id"], partition = pods[index], self._pod_partitions[index]
            offset = self._offsets[partition]
            self._offsets[partition] = offset + 1
            # Unvalidated: the values are valid by construction, and
            # validating ten million models would cost more than storing them.
            record = EventRecord.model_construct(
                received_at=at, event=self._event(kind, fields)
            )
            records.append(ConsumedRecord(record, partition, offset))
        return records

    def _event(self, kind: float, fields: dict[str, Any]) -> Event:
        if kind < POD_ENTERED:
            return PodEntered.model_construct(type="pod_entered", **fields)
        draw, artifacts = self._random.random, self.artifacts
        artifact = artifacts[int(draw() * len(artifacts))]
        if kind < ARTIFACT_VIEWED:
            return ArtifactViewed.model_construct(
                type="artifact_viewed", artifact_id=artifact, **fields
            )
        if kind < CHECKOUT_STARTED:
            listed = [artifact] + [
                artifacts[int(draw() * len(artifacts))] for _ in range(int(draw() * 3))
            ]
            return CheckoutStarted.model_construct(
                type="checkout_started", artifact_ids=listed, **fields
            )
        return SaleCompleted.model_construct(
            type="sale_completed",
            artifact_id=artifact,
            order_id=UUID(int=self._random.getrandbits(128)),
            **fields,
        )


async def load(clickhouse: ClickHouse, year: Year) -> float:
    """Insert every event of ``year`` through the sink's insert; the seconds taken.

    The next batch is built while ClickHouse stores the one before it.
    """
    progress = Progress("load", total=year.events)
    # Millions of short-lived, acyclic objects: the collector's passes over
    # them would cost more than building them.
    gc.freeze()
    gc.disable()
    started = time.perf_counter()
    try:
        storing: asyncio.Future[None] | None = None
        in_flight = 0
        for batch in year.batches():
            if storing is not None:
                await storing
                progress.advance(in_flight)
            storing = asyncio.ensure_future(insert_records(clickhouse, batch))
            in_flight = len(batch)
        if storing is not None:
            await storing
            progress.advance(in_flight)
        elapsed_s = time.perf_counter() - started
    finally:
        gc.enable()
        gc.unfreeze()
    progress.finish()
    return elapsed_s


async def settle(clickhouse: ClickHouse, *, timeout_s: float = 600.0) -> float:
    """Wait until no merge runs in the database; the seconds waited.

    Merges of the fresh load would compete with the queries for the cores,
    and the timings would measure them as much as the queries.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        rows = await clickhouse.query(
            "SELECT count() FROM system.merges WHERE database = currentDatabase()"
        )
        if rows[0][0] == 0:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def table_figures(clickhouse: ClickHouse) -> dict[str, float]:
    """Rows and active parts of the events table and of each rollup."""
    rows = await clickhouse.query(
        "SELECT table, sum(rows), count() FROM system.parts "
        "WHERE database = currentDatabase() AND active "
        "AND table IN ('analytics_events', 'pod_counts', 'artifact_counts') "
        "GROUP BY table"
    )
    figures = {}
    for table, stored, parts in rows:
        figures[f"query_{table}_rows"] = float(stored)
        figures[f"query_{table}_parts"] = float(parts)
    return figures
