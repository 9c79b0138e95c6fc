"""Generated event histories: reproducible, varied, and thick around clock changes.

Many pods and artifacts, some far busier than others; every event type;
checkouts that list an artifact twice; times at arbitrary milliseconds, a
share of them exactly on quarter hours, and a third within a day and a half
of a 2024 clock change of New York, Berlin or Adelaide.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from gateway_analytics.clickhouse.client import ClickHouse
from gateway_analytics.clickhouse.counts import Entity
from gateway_analytics.clickhouse.events_table import ConsumedRecord, insert_records
from gateway_analytics.shared.events import (
    ArtifactViewed,
    CheckoutStarted,
    Event,
    EventRecord,
    EventType,
    PodEntered,
    SaleCompleted,
    entity_key,
)
from tests.integration.count_reference import named_entities

# The 2024 clock changes of New York, Berlin and Adelaide, in UTC.
CLOCK_CHANGES = [
    datetime(2024, 3, 10, 7, tzinfo=UTC),
    datetime(2024, 3, 31, 1, tzinfo=UTC),
    datetime(2024, 4, 6, 16, 30, tzinfo=UTC),
    datetime(2024, 10, 5, 16, 30, tzinfo=UTC),
    datetime(2024, 10, 27, 1, tzinfo=UTC),
    datetime(2024, 11, 3, 6, tzinfo=UTC),
]
# Two stretches of a few weeks each, with a quiet summer between them, so an
# unfiltered query has to widen its look back across the gap.
SPANS = [
    (datetime(2024, 2, 26, tzinfo=UTC), datetime(2024, 4, 16, tzinfo=UTC)),
    (datetime(2024, 9, 30, tzinfo=UTC), datetime(2024, 11, 12, tzinfo=UTC)),
]
# Topics in these tests have three partitions.
PARTITIONS = 3


@dataclass(frozen=True)
class History:
    """Generated event records and the entities they name."""

    records: list[EventRecord]
    pods: list[UUID]
    artifacts: list[UUID]

    def busiest(self, entity: Entity, count: int) -> tuple[UUID, ...]:
        """The ``count`` entities named by the most events, busiest first."""
        named = itertools.chain.from_iterable(
            named_entities(record.event, entity) for record in self.records
        )
        totals: dict[UUID, int] = {}
        for entity_id in named:
            totals[entity_id] = totals.get(entity_id, 0) + 1
        return tuple(sorted(totals, key=lambda e: (-totals[e], str(e)))[:count])


def _uuid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


def _instant(rng: random.Random) -> datetime:
    """A moment inside the spans: a third near a clock change, some on edges."""
    draw = rng.random()
    if draw < 0.1:
        change = rng.choice(CLOCK_CHANGES)
        return change + timedelta(minutes=15 * rng.randrange(-120, 120))
    if draw < 0.35:
        change = rng.choice(CLOCK_CHANGES)
        return change + timedelta(milliseconds=rng.randrange(-108_000_000, 108_000_000))
    start, end = rng.choice(SPANS)
    span_ms = int((end - start) / timedelta(milliseconds=1))
    return start + timedelta(milliseconds=rng.randrange(span_ms))


def _event(rng: random.Random, history: History) -> Event:
    kind = rng.choice(list(EventType))
    common: dict[str, Any] = {"event_id": _uuid(rng), "occurred_at": _instant(rng)}
    # A few pods and artifacts are far busier than the rest.
    pod = rng.choices(history.pods, weights=range(len(history.pods), 0, -1))[0]
    artifacts = rng.choices(
        history.artifacts, weights=range(len(history.artifacts), 0, -1), k=4
    )
    in_pod = pod if rng.random() < 0.7 else None
    if kind is EventType.POD_ENTERED:
        return PodEntered(type="pod_entered", pod_id=pod, **common)
    if kind is EventType.ARTIFACT_VIEWED:
        return ArtifactViewed(
            type="artifact_viewed", artifact_id=artifacts[0], pod_id=in_pod, **common
        )
    if kind is EventType.CHECKOUT_STARTED:
        # Repeats in the list are deliberate: each artifact counts once.
        listed = artifacts[: rng.randint(1, 4)]
        return CheckoutStarted(
            type="checkout_started", artifact_ids=listed, pod_id=in_pod, **common
        )
    return SaleCompleted(
        type="sale_completed",
        order_id=_uuid(rng),
        artifact_id=artifacts[0],
        pod_id=in_pod,
        **common,
    )


def generate_history(*, seed: int, events: int, pods: int, artifacts: int) -> History:
    """Reproducible records, each received a few seconds after it occurred."""
    rng = random.Random(seed)
    history = History(
        records=[],
        pods=[_uuid(rng) for _ in range(pods)],
        artifacts=[_uuid(rng) for _ in range(artifacts)],
    )
    for _ in range(events):
        event = _event(rng, history)
        assert event.occurred_at is not None
        received_at = event.occurred_at + timedelta(seconds=rng.uniform(0, 5))
        history.records.append(EventRecord(received_at=received_at, event=event))
    return history


def kafka_positions(records: Sequence[EventRecord]) -> list[ConsumedRecord]:
    """Kafka positions as the producer would give them: one pod, one partition."""
    next_offset = [0] * PARTITIONS
    consumed = []
    for record in records:
        partition = int.from_bytes(entity_key(record)[-4:], "big") % PARTITIONS
        consumed.append(ConsumedRecord(record, partition, next_offset[partition]))
        next_offset[partition] += 1
    return consumed


async def store_in_batches(
    clickhouse: ClickHouse, records: Sequence[EventRecord], batch_size: int = 250
) -> list[ConsumedRecord]:
    """Store ``records`` as a sink would, in inserts of ``batch_size``.

    Returns each record with the Kafka position it was stored under.
    """
    consumed = kafka_positions(records)
    for start in range(0, len(consumed), batch_size):
        await insert_records(clickhouse, consumed[start : start + batch_size])
    return consumed
