"""How event records travel on the topic: many to one Kafka record.

Each Kafka record carries a JSON array of event records, all bound for the
same partition. Consumers pay their per-record cost (Faust's in particular)
once per array rather than once per event. A bare JSON object, one event
record on its own, is read too: topics written that way stay replayable.

A value the API wrote may carry the header ``fresh-events``, the number of
event records it holds, when every one of them was validated by the API and
given an ``event_id`` the API minted. Such a value can repeat no stored
event except by being the same Kafka record read again, so the sink may
store it without decoding it (see :func:`fresh_events`). A value holding
any event whose id came from the client carries no such header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from pydantic import Field, TypeAdapter

from gateway_analytics.shared.events.models import (
    Event,
    EventRecord,
)

# Kafka refuses records above about 1 MiB by default; half of that leaves
# room for the record's framing and for brokers configured lower.
MAX_VALUE_BYTES = 512 * 1024
FRESH_EVENTS_HEADER = "fresh-events"

_record_list: TypeAdapter[list[EventRecord]] = TypeAdapter(
    Annotated[list[EventRecord], Field(min_length=1)]
)
# How encode_events writes an event's id.
_WRITTEN_EVENT_ID = re.compile(rb'"event_id":"([0-9a-f-]{36})"')


class EncodedEvent(NamedTuple):
    """One event ready for the topic: its id, its record key and its JSON.

    ``json`` is the event's :class:`EventRecord` as JSON; ``key`` is what
    :func:`~gateway_analytics.shared.events.entity_key` gives that record;
    ``minted_id`` tells whether ``event_id`` was made here rather than sent.
    """

    event_id: str
    key: bytes
    json: bytes
    minted_id: bool = False


def encode_events(
    events: Sequence[Event], *, received_at: datetime
) -> list[EncodedEvent]:
    """Resolve each event's id and time, as the record will be stored, and
    encode it.

    The result decodes to what :func:`resolve_records` returns, but costs
    one pydantic serialization per event and no model copies: the API does
    this for every event it accepts.
    """
    received = received_at.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()
    record_start = b'{"received_at":"%s","event":' % received
    received_time_field = b',"occurred_at":"%s"' % received
    fresh_ids = iter(_fresh_ids(sum(1 for event in events if event.event_id is None)))
    encoded = []
    for event in events:
        # The model's own serializer, not the union's: it need not find the
        # event's type first. Its JSON begins with event_id and occurred_at
        # (see _Event), and neither a UUID, null nor a time holds a comma.
        written = event.__pydantic_serializer__.to_json(event)
        minted_id = event.event_id is None
        if minted_id:
            event_id = next(fresh_ids)
            id_field = b'{"event_id":"%s"' % event_id
            rest = written[len(_ABSENT_ID) :]
        else:
            id_field, comma, rest = written.partition(b",")
            rest = comma + rest
            event_id = id_field[-37:-1]
        if event.occurred_at is None:
            rest = received_time_field + rest[len(_ABSENT_TIME) :]
        record = b"%s%s%s}" % (record_start, id_field, rest)
        # pod_id is the last field of every type of event (see models), and
        # slicing its text costs less than str() of its UUID, which runs in
        # Python.
        key = written[-38:-2] if written.endswith(b'"}') else event_id
        encoded.append(EncodedEvent(event_id.decode(), key, record, minted_id))
    return encoded


# How an event's JSON begins when it came without an id, and how the time
# field after the id reads when it came without a time.
_ABSENT_ID = b'{"event_id":null'
_ABSENT_TIME = b',"occurred_at":null'
# Byte translations that set a UUID's version to 4 (the high four bits of
# its 7th byte) and its variant to RFC 4122's (10 in the two high bits of
# its 9th byte).
_VERSION_4 = bytes(byte & 0x0F | 0x40 for byte in range(256))
_RFC_4122_VARIANT = bytes(byte & 0x3F | 0x80 for byte in range(256))
_UUID_DIGIT_GROUPS = re.compile(rb"(.{8})(.{4})(.{4})(.{4})(.{12})", re.DOTALL)


def _fresh_ids(count: int) -> list[bytes]:
    """``count`` random (version 4) UUIDs in their text form, from one read of
    the system's randomness rather than one read each."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_4122_VARIANT)
    groups = _UUID_DIGIT_GROUPS.findall(raw.hex().encode())
    return list(map(b"-".join, groups))


class ValueBuilder:
    """One Kafka record value being filled with encoded event records.

    It holds as many as fit in :data:`MAX_VALUE_BYTES`; a record larger than
    that on its own still gets a value of its own.
    """

    def __init__(self) -> None:
        self._records: list[bytes] = []
        self._size_bytes = 2  # the brackets
        self._all_minted = True

    def fits(self, record: bytes) -> bool:
        """Whether ``record`` may join the value without passing the limit."""
        return (
            not self._records or self._size_bytes + len(record) + 1 <= MAX_VALUE_BYTES
        )

    def add(self, record: bytes, *, minted_id: bool = False) -> None:
        """Append ``record``; check :meth:`fits` first.

        ``minted_id`` says that ``record`` is an :class:`EncodedEvent`'s JSON
        whose id the API minted.
        """
        self._records.append(record)
        self._size_bytes += len(record) + 1
        self._all_minted = self._all_minted and minted_id

    def __bool__(self) -> bool:
        return bool(self._records)

    @property
    def value(self) -> bytes:
        """The JSON array of the records added, in order."""
        return b"[" + b",".join(self._records) + b"]"

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers for :attr:`value`: ``fresh-events`` when every
        record added had a minted id, none otherwise."""
        if not self._all_minted or not self._records:
            return []
        return [(FRESH_EVENTS_HEADER, str(len(self._records)).encode())]


def join_values(encoded: Sequence[bytes]) -> Iterator[bytes]:
    """Kafka record values holding the encoded event records in order, as
    many to a value as :class:`ValueBuilder` lets fit."""
    builder = ValueBuilder()
    for record in encoded:
        if not builder.fits(record):
            yield builder.value
            builder = ValueBuilder()
        builder.add(record)
    if builder:
        yield builder.value


def encode_values(records: Sequence[EventRecord]) -> Iterator[bytes]:
    """Kafka record values holding ``records`` in order (see :func:`join_values`)."""
    return join_values([record.model_dump_json().encode() for record in records])


def fresh_events(headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    """How many fresh event records a Kafka record's ``headers`` announce.

    None when the record carries no ``fresh-events`` header, or one that is
    not a positive count; its value must then be decoded.
    """
    for name, value in headers or ():
        if name == FRESH_EVENTS_HEADER:
            count = value.decode("ascii", "replace")
            return int(count) if count.isdigit() and int(count) > 0 else None
    return None


def written_event_ids(value: bytes) -> list[str]:
    """The event ids in a value :func:`encode_events` wrote, as text, found
    without decoding the value."""
    return [found.decode() for found in _WRITTEN_EVENT_ID.findall(value)]


def decode_value(value: bytes) -> list[EventRecord]:
    """The event records of one Kafka record value, in order.

    Raises:
        pydantic.ValidationError: the value is not a non-empty array of event
            records, nor a single one.
    """
    if value.lstrip()[:1] == b"[":
        return _record_list.validate_json(value)
    return [EventRecord.model_validate_json(value)]
