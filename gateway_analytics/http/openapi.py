"""The OpenAPI 3.1 document of the API, generated from the models it runs on.

Query parameters come from the pydantic models that parse them, bodies from
the models that validate requests and build answers, so the document says
what the code does rather than what someone remembered to write down. It is
built once per application and served as it is at ``/api/openapi.json``,
open to everyone like the probes.

Every ``GET`` route also answers ``HEAD`` (aiohttp adds it), so the document
lists a ``head`` operation beside each ``get``: the same parameters and
statuses, without bodies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from gateway_analytics.clickhouse.counts import Entity
from gateway_analytics.http.count_parameters import PARAMETERS_OF
from gateway_analytics.http.counts import RESPONSE_OF
from gateway_analytics.http.health import (
    LIVENESS_PATH,
    METRICS_PATH,
    READINESS_PATH,
    Alive,
    NotReady,
    Ready,
)
from gateway_analytics.http.ingest import Accepted
from gateway_analytics.http.problems import ErrorBody
from gateway_analytics.shared.events import EventBatch

OPENAPI_PATH = "/api/openapi.json"
OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict[str, Any])
"""Where an application keeps the document it serves."""

_REF_TEMPLATE = "#/components/schemas/{model}"
_JSON = "application/json"
# Either no key at all (when none are configured) or a bearer key.
_OPTIONAL_BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]

_HEADERS = {
    "X-Request-Id": {
        "description": "The request's id: the client's X-Request-Id when it is "
        "a short plain token, else one made by the API. Log lines carry it.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: Bearer.",
        "required": True,
        "schema": {"type": "string"},
    },
}


class _QuerySchema(GenerateJsonSchema):
    """Schemas of query parameters, where None is an absent parameter.

    A query string cannot say null, so the null branch pydantic gives an
    optional field is left out.
    """

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        """The schema of the value, without null."""
        return self.generate_inner(schema["schema"])


def build_openapi(
    *,
    events_path: str,
    count_paths: Mapping[str, Entity],
    max_body_bytes: int,
    max_events: int,
) -> dict[str, Any]:
    """The OpenAPI document of an application with these routes and limits.

    Args:
        events_path: where events are posted.
        count_paths: each count endpoint's path and the entity it counts.
        max_body_bytes: the largest body accepted, after decompression.
        max_events: the most events accepted in one request.
    """
    document = _Document()
    document.add(
        events_path,
        "post",
        document.ingest_operation(max_body_bytes=max_body_bytes, max_events=max_events),
    )
    for path, entity in count_paths.items():
        document.add_get(path, document.count_operation(path, entity))
    for path, operation in document.ops_operations().items():
        document.add_get(path, operation)
    return document.render()


def add_openapi_route(app: web.Application, document: dict[str, Any]) -> None:
    """Serve ``document`` at ``/api/openapi.json``, serialized once, to anyone."""
    app[OPENAPI_DOCUMENT] = document
    body = json.dumps(document).encode()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=_JSON)

    app.router.add_get(OPENAPI_PATH, openapi)


def query_parameters(
    model: type[BaseModel], *, ref_template: str = _REF_TEMPLATE
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The query parameters ``model`` parses, and the schemas they refer to.

    Each field becomes one parameter named by its alias, required only when
    the field is; a list field is a parameter that may be repeated.

    Args:
        model: the pydantic model that parses the query string.
        ref_template: how references to shared schemas are written; by
            default they point into the document's components.
    """
    schema = model.model_json_schema(
        by_alias=True, ref_template=ref_template, schema_generator=_QuerySchema
    )
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        description = field_schema.pop("description", None)
        field_schema.pop("title", None)
        if "default" in field_schema and field_schema["default"] is None:
            del field_schema["default"]
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if description:
            parameter["description"] = description
        if field_schema.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters, schema.get("$defs", {})


class _Document:
    """The document while it is assembled: paths, and the schemas they use."""

    def __init__(self) -> None:
        self._body_models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
            (EventBatch, "validation"),
            (Accepted, "serialization"),
            (ErrorBody, "serialization"),
            (Alive, "serialization"),
            (Ready, "serialization"),
            (NotReady, "serialization"),
            *((model, "serialization") for model in RESPONSE_OF.values()),
        ]
        refs, top = models_json_schema(
            self._body_models, by_alias=True, ref_template=_REF_TEMPLATE
        )
        self._refs = refs
        self._schemas: dict[str, Any] = dict(top.get("$defs", {}))
        self._paths: dict[str, dict[str, Any]] = {}

    def ref(
        self, model: type[BaseModel], mode: JsonSchemaMode = "serialization"
    ) -> dict[str, Any]:
        """A reference to the schema of ``model``."""
        return dict(self._refs[(model, mode)])

    def add(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """Add one operation."""
        self._paths.setdefault(path, {})[method] = operation

    def add_get(self, path: str, operation: dict[str, Any]) -> None:
        """Add a GET operation and the HEAD operation aiohttp derives from it."""
        head = copy.deepcopy(operation)
        head["operationId"] = f"{operation['operationId']}_head"
        head["summary"] = f"{operation['summary']}: the headers alone"
        for response in head["responses"].values():
            response.pop("content", None)
        self.add(path, "get", operation)
        self.add(path, "head", head)

    def merge_schemas(self, schemas: Mapping[str, Any]) -> None:
        """Add ``schemas`` to the components; a name means one schema."""
        for name, schema in schemas.items():
            if self._schemas.setdefault(name, schema) != schema:
                raise RuntimeError(f"two different schemas are named {name}")

    def ingest_operation(
        self, *, max_body_bytes: int, max_events: int
    ) -> dict[str, Any]:
        """``POST`` of a batch of events."""
        return {
            "operationId": "ingest_events",
            "tags": ["analytics"],
            "summary": "Publish a batch of events",
            "description": "The batch is accepted or refused as a whole; the "
            "answer is sent once Kafka holds every event.",
            "security": _OPTIONAL_BEARER,
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": self.ref(EventBatch, "validation")}},
            },
            "responses": {
                "202": _response("Every event is on the topic.", self.ref(Accepted)),
                "400": self._error(
                    "The body is not JSON, not a batch of events, or an event "
                    "breaks the contract; problems lists every invalid field."
                ),
                **self._auth_errors(),
                "413": self._error(
                    f"The body is larger than {max_body_bytes} bytes after "
                    f"decompression, or holds more than {max_events} events."
                ),
                "503": self._error(
                    "Kafka did not confirm the events as durable; send the "
                    "batch again after Retry-After seconds.",
                    headers=["Retry-After"],
                ),
            },
        }

    def count_operation(self, path: str, entity: Entity) -> dict[str, Any]:
        """``GET`` of the counts of one kind of entity."""
        parameters, schemas = query_parameters(PARAMETERS_OF[entity])
        self.merge_schemas(schemas)
        plural = path.rstrip("/").rsplit("/", 1)[-1]
        return {
            "operationId": f"count_{plural}",
            "tags": ["analytics"],
            "summary": f"Event counts per {entity.value.removesuffix('_id')} "
            "and bucket",
            "security": _OPTIONAL_BEARER,
            "parameters": parameters,
            "responses": {
                "200": _response(
                    "A page of counts, newest bucket first.",
                    self.ref(RESPONSE_OF[entity]),
                ),
                "400": self._error(
                    "A parameter has a value that is not allowed; problems "
                    "names each one."
                ),
                **self._auth_errors(),
                "503": self._error(
                    "ClickHouse could not answer; ask again after Retry-After seconds.",
                    headers=["Retry-After"],
                ),
            },
        }

    def ops_operations(self) -> dict[str, dict[str, Any]]:
        """The ``GET`` operations of probes, scrapers and this document."""
        return {
            LIVENESS_PATH: _operation(
                "liveness",
                "Whether the process runs",
                {"200": _response("The process runs.", self.ref(Alive))},
            ),
            READINESS_PATH: _operation(
                "readiness",
                "Whether Kafka and ClickHouse can serve requests",
                {
                    "200": _response("Every check passed.", self.ref(Ready)),
                    "503": _response(
                        "A check failed; checks says which and why.",
                        self.ref(NotReady),
                    ),
                },
            ),
            METRICS_PATH: _operation(
                "metrics",
                "Prometheus metrics",
                {
                    "200": _response(
                        "The metrics in the Prometheus text format.",
                        {"type": "string"},
                        media_type="text/plain",
                    )
                },
            ),
            OPENAPI_PATH: _operation(
                "openapi",
                "This OpenAPI document",
                {
                    "200": _response(
                        "The OpenAPI 3.1 document of the API.", {"type": "object"}
                    )
                },
            ),
        }

    def render(self) -> dict[str, Any]:
        """The finished document."""
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "gateway-analytics",
                "version": version("gateway-analytics"),
                "description": "Ingest gateway events and read their counts "
                "per pod or artifact, bucketed by hour, day or week.",
            },
            "tags": [
                {"name": "analytics", "description": "Events in, counts out."},
                {"name": "operations", "description": "Probes and scrapers."},
            ],
            "paths": self._paths,
            "components": {
                "schemas": self._schemas,
                "headers": copy.deepcopy(_HEADERS),
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An ingest key for POST, a query key "
                        "for the counts; needed only when keys are configured.",
                    }
                },
            },
        }

    def _error(
        self, description: str, *, headers: Sequence[str] = ()
    ) -> dict[str, Any]:
        return _response(description, self.ref(ErrorBody), headers=headers)

    def _auth_errors(self) -> dict[str, Any]:
        return {
            "401": self._error(
                "Keys are configured and the request has none, or an unknown one.",
                headers=["WWW-Authenticate"],
            ),
            "403": self._error("The key is valid, but for the other kind of route."),
        }


def _operation(
    operation_id: str, summary: str, responses: dict[str, Any]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["operations"],
        "summary": summary,
        "responses": responses,
    }


def _response(
    description: str,
    schema: dict[str, Any],
    *,
    media_type: str = _JSON,
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            name: {"$ref": f"#/components/headers/{name}"}
            for name in ("X-Request-Id", *headers)
        },
        "content": {media_type: {"schema": schema}},
    }
