"""How event records travel on the topic: many to one Kafka record.

Each Kafka record carries a JSON array of event records, all bound for the
same partition. Consumers pay their per-record cost (Faust's in particular)
once per array rather than once per event. A bare JSON object, one event
record on its own, is read too: topics written that way stay replayable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from pydantic import Field, TypeAdapter

from gateway_analytics.shared.events.models import EventRecord

# Kafka refuses records above about 1 MiB by default; half of that leaves
# room for the record's framing and for brokers configured lower.
MAX_VALUE_BYTES = 512 * 1024

_record_list: TypeAdapter[list[EventRecord]] = TypeAdapter(
    Annotated[list[EventRecord], Field(min_length=1)]
)


def encode_values(records: Sequence[EventRecord]) -> Iterator[bytes]:
    """Kafka record values holding ``records`` in order.

    A value holds as many records as fit in :data:`MAX_VALUE_BYTES`; a record
    larger than that on its own gets a value of its own.
    """
    pending: list[bytes] = []
    size = 2
    for record in records:
        encoded = record.model_dump_json().encode()
        if pending and size + len(encoded) + 1 > MAX_VALUE_BYTES:
            yield b"[" + b",".join(pending) + b"]"
            pending, size = [], 2
        pending.append(encoded)
        size += len(encoded) + 1
    if pending:
        yield b"[" + b",".join(pending) + b"]"


def decode_value(value: bytes) -> list[EventRecord]:
    """The event records of one Kafka record value, in order.

    Raises:
        pydantic.ValidationError: the value is not a non-empty array of event
            records, nor a single one.
    """
    if value.lstrip()[:1] == b"[":
        return _record_list.validate_json(value)
    return [EventRecord.model_validate_json(value)]
