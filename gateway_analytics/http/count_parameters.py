"""The query parameters of the count endpoints, parsed and described in one place.

The pydantic models below both parse a request's query string and give the
OpenAPI document its parameter list, so the two cannot drift apart.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, TypeVar
from uuid import UUID

from multidict import MultiDict, MultiMapping
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from gateway_analytics.clickhouse.counts import CountQuery, Entity, Window
from gateway_analytics.http.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    Page,
)
from gateway_analytics.http.problems import RequestError
from gateway_analytics.shared.events import EventType
from gateway_analytics.shared.events.models import (
    EARLIEST_OCCURRED_AT,
    LATEST_OCCURRED_AT,
)

# The rollups count per quarter hour, so a range can start or end only there.
_QUARTER_HOUR = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _rfc3339(value: object) -> object:
    # Lax parsing would read digits as Unix seconds; the API promises RFC 3339.
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "must be an RFC 3339 time such as 2024-05-20T00:00:00Z"
            ) from None
    return value


def _whole_number(value: object) -> object:
    # Python's int() would also take " 1", "+1", "1_0" and non-ASCII digits.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError(f"must be a positive whole number, got {value[:20]!r}")
    return value


def _on_quarter_hour(value: datetime) -> datetime:
    # Measured from the epoch rather than converted to UTC, which overflows
    # for times near year 1 or 9999 with an offset.
    if (value - _EPOCH) % _QUARTER_HOUR:
        raise ValueError(
            "must fall on a quarter hour (minutes 00, 15, 30 or 45, no seconds), "
            "the resolution counts are kept at"
        )
    return value


def _stored_range_edge(value: datetime | None) -> datetime | None:
    # No event outside the contract's range is stored, so a bound beyond it
    # asks the same question as the range's edge; ClickHouse's DateTime
    # could not hold most such bounds at all.
    if value is None:
        return None
    return min(max(value, EARLIEST_OCCURRED_AT), LATEST_OCCURRED_AT).astimezone(UTC)


def _known_zone(value: str) -> str:
    if value not in _known_zones():
        raise ValueError(
            "must be an IANA time zone name such as Europe/Berlin or Asia/Kolkata"
        )
    return value


Instant = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_on_quarter_hour)
]
TimeZoneName = Annotated[
    str,
    AfterValidator(_known_zone),
    Field(examples=["UTC", "America/New_York", "Asia/Kathmandu"]),
]


class CountParameters(BaseModel):
    """Parameters both count endpoints take."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    window: Window = Field(
        default=Window.DAY, description="Width of a bucket: hour, day or week."
    )
    page: Annotated[int, BeforeValidator(_whole_number)] = Field(
        default=1, ge=1, le=MAX_PAGE, description="The 1-based page to return."
    )
    page_size: Annotated[
        int,
        BeforeValidator(_whole_number),
        AfterValidator(lambda size: min(size, MAX_PAGE_SIZE)),
    ] = Field(
        default=DEFAULT_PAGE_SIZE,
        ge=1,
        description=f"Rows per page; above {MAX_PAGE_SIZE} it is reduced "
        f"to {MAX_PAGE_SIZE}.",
    )
    since: Instant | None = Field(
        default=None,
        alias="from",
        description="Count events that occurred at or after this RFC 3339 "
        "instant, which falls on a quarter hour.",
    )
    until: Instant | None = Field(
        default=None,
        alias="to",
        description="Count events that occurred before this RFC 3339 instant, "
        "which falls on a quarter hour.",
    )
    type: list[EventType] = Field(
        default_factory=list,
        description="Count only events of these types; repeat for several.",
    )
    tz: TimeZoneName | None = Field(
        default=None,
        description="IANA time zone the buckets are aligned to and written "
        "in; UTC with a Z when absent.",
    )

    @model_validator(mode="after")
    def _range_not_empty(self) -> CountParameters:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("from must be before to")
        return self

    @property
    def entity_ids(self) -> list[UUID]:
        """The entities the counts are limited to; all when empty."""
        return []

    def count_query(self, entity: Entity) -> CountQuery:
        """The rollup query these parameters ask for."""
        return CountQuery(
            entity=entity,
            window=self.window,
            time_zone=self.tz,
            since=_stored_range_edge(self.since),
            until=_stored_range_edge(self.until),
            entity_ids=tuple(self.entity_ids),
            types=tuple(kind.value for kind in self.type),
        )

    def as_page(self) -> Page:
        """The page asked for."""
        return Page(number=self.page, size=self.page_size)


class PodCountParameters(CountParameters):
    """Parameters of ``GET /api/analytics/pods``."""

    pod_id: list[UUID] = Field(
        default_factory=list,
        description="Count only these pods; repeat for several.",
    )

    @property
    def entity_ids(self) -> list[UUID]:
        """The pods asked for."""
        return self.pod_id


class ArtifactCountParameters(CountParameters):
    """Parameters of ``GET /api/analytics/artifacts``."""

    artifact_id: list[UUID] = Field(
        default_factory=list,
        description="Count only these artifacts; repeat for several.",
    )

    @property
    def entity_ids(self) -> list[UUID]:
        """The artifacts asked for."""
        return self.artifact_id


PARAMETERS_OF: dict[Entity, type[CountParameters]] = {
    Entity.POD: PodCountParameters,
    Entity.ARTIFACT: ArtifactCountParameters,
}

_Parameters = TypeVar("_Parameters", bound=CountParameters)

# Messages that say more than pydantic's default for the same check.
_MESSAGES = {
    ("page", "less_than_equal"): f"must be at most {MAX_PAGE}; narrow the query "
    "with from and to instead of paging further",
    ("type", "enum"): "must be one of " + ", ".join(kind.value for kind in EventType),
    ("window", "enum"): "must be one of " + ", ".join(w.value for w in Window),
}


def parse_parameters(
    model: type[_Parameters], query: MultiMapping[str] | Mapping[str, str]
) -> _Parameters:
    """The parameters of ``query``, validated by ``model``.

    A parameter given more than once counts once unless it is a list.

    Raises:
        RequestError: 400 naming every invalid parameter and what to send.
    """
    given = query if isinstance(query, MultiMapping) else MultiDict(query)
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in given:
            values[key] = (
                given.getall(key) if _is_list(field.annotation) else given[key]
            )
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = [_problem(issue) for issue in error.errors(include_url=False)]
        raise RequestError(
            400,
            "invalid_parameter",
            "; ".join(_sentence(problem) for problem in problems) + ".",
            problems=problems,
        ) from None


def _sentence(problem: dict[str, Any]) -> str:
    if problem["path"] == "query":
        return str(problem["message"])
    return f"{problem['path']}: {problem['message']}"


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _problem(issue: Any) -> dict[str, Any]:
    location = [str(part) for part in issue["loc"]]
    name = location[0] if location else "query"
    message = _MESSAGES.get((name, issue["type"]))
    if message is None:
        message = str(issue["msg"])
        # ValueErrors raised above arrive as "Value error, <our sentence>".
        message = message.removeprefix("Value error, ")
        if not location:
            return {"path": "query", "message": message}
    shown = f"{name}[{location[1]}]" if len(location) > 1 else name
    value = issue.get("input")
    if isinstance(value, str):
        message = f"{message} (got {value[:40]!r})"
    return {"path": shown, "message": message}
