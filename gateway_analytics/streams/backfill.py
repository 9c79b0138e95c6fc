"""Backfill: newline-delimited JSON events published through the ingest path.

Each line is one event of the contract. Bad lines are reported with their
line numbers and left out; good ones are published in batches exactly as the
API publishes a request, so the sink treats them the same way. Events that
carry an ``event_id`` are counted once however often the file is loaded
(within the deduplication window); events without one get a fresh id on every
load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from pydantic import ValidationError

from gateway_analytics.shared.events import Event, encode_events, event_adapter
from gateway_analytics.shared.progress import Progress
from gateway_analytics.shared.publisher import EventPublisher

logger = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """Counts of a backfill, and the bad lines with what is wrong with them."""

    published: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


async def backfill(
    lines: Iterable[str],
    *,
    publisher: EventPublisher,
    batch_size: int,
    progress: Progress,
    errors: TextIO,
) -> BackfillReport:
    """Validate every line and publish the valid events in batches.

    Args:
        lines: the input, one JSON event per line; blank lines are skipped.
        publisher: the same publisher the API uses.
        batch_size: events per publish.
        progress: advanced by every line read.
        errors: where each bad line is reported as ``line N: problem``.
    """
    report = BackfillReport()
    pending: list[Event] = []
    for number, line in enumerate(lines, start=1):
        progress.advance(1)
        if not line.strip():
            continue
        try:
            pending.append(event_adapter.validate_json(line))
        except ValidationError as error:
            problem = _describe(error)
            report.bad_lines.append((number, problem))
            errors.write(f"line {number}: {problem}\n")
            continue
        if len(pending) >= batch_size:
            report.published += await _publish(publisher, pending)
            pending = []
    if pending:
        report.published += await _publish(publisher, pending)
    progress.finish()
    return report


async def _publish(publisher: EventPublisher, events: list[Event]) -> int:
    await publisher.publish(encode_events(events, received_at=datetime.now(UTC)))
    return len(events)


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'event'}: {issue['msg']}"
        for issue in error.errors(include_url=False)
    )
