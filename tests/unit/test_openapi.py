"""The OpenAPI document: complete, valid, and in step with the code it describes."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway_analytics.http.app import COUNT_PATHS, EVENTS_PATH, create_app
from gateway_analytics.http.count_parameters import (
    ArtifactCountParameters,
    PodCountParameters,
    parse_parameters,
)
from gateway_analytics.http.ingest import parse_events
from gateway_analytics.http.openapi import OPENAPI_DOCUMENT, OPENAPI_PATH
from gateway_analytics.http.problems import RequestError
from gateway_analytics.shared.settings import Settings

HTTP_METHODS = {"get", "head", "post", "put", "patch", "delete", "options", "trace"}
INGEST_KEY, QUERY_KEY = "ingest-key-1", "query-key-1"


class Unused:
    """Stands in for ClickHouse and the publisher, which no test here reaches."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the test reached the backend ({name})")


def make_app(settings: Settings | None = None) -> web.Application:
    """The API over stand-ins for its backends."""
    return create_app(
        settings=settings or Settings(),
        clickhouse=Unused(),  # type: ignore[arg-type]
        publisher=Unused(),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def app() -> web.Application:
    """One application, for the document it built."""
    return make_app()


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    """The document ``app`` serves."""
    return app[OPENAPI_DOCUMENT]


@pytest.fixture
async def keyed_client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The API on a test server, with ingest and query keys configured."""
    settings = Settings(
        ingest_api_keys=SecretStr(INGEST_KEY), query_api_keys=SecretStr(QUERY_KEY)
    )
    async with TestClient(TestServer(make_app(settings))) as client:
        yield client


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (method, path, operation) of ``document``."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def refs(value: Any) -> Iterator[str]:
    """Every ``$ref`` inside ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The value a local JSON pointer reference names."""
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    target: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict), f"{ref} passes through a non-object"
        assert token in target, f"{ref} does not resolve: no {token!r}"
        target = target[token]
    return target


def component_validator(document: dict[str, Any], name: str) -> Any:
    """A validator of the component schema ``name``, its references resolved."""
    root = {
        "$ref": f"#/components/schemas/{name}",
        "components": document["components"],
    }
    return jsonschema_rs.validator_for(root)


def error_body(error: RequestError) -> Any:
    """The decoded body of an error's response."""
    body = error.response.body
    assert isinstance(body, bytes)
    return json.loads(body)


def test_every_route_is_an_operation_and_every_operation_a_route(
    app: web.Application, document: dict[str, Any]
) -> None:
    """The document lists exactly the routes the application registers."""
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }

    documented = {(method, path) for method, path, _ in operations(document)}

    assert routes == documented
    assert {("post", EVENTS_PATH), ("get", OPENAPI_PATH)} <= documented


def test_pod_operation_takes_the_parameters_of_its_model_by_alias(
    document: dict[str, Any],
) -> None:
    """Pods take window, page, page_size, from, to, type, tz and pod_id."""
    operation = document["paths"]["/api/analytics/pods"]["get"]

    names = [parameter["name"] for parameter in operation["parameters"]]

    expected = ["window", "page", "page_size", "from", "to", "type", "tz", "pod_id"]
    assert names == expected
    model_names = [
        field.alias or name for name, field in PodCountParameters.model_fields.items()
    ]
    assert sorted(names) == sorted(model_names)


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/api/analytics/pods", PodCountParameters),
        ("/api/analytics/artifacts", ArtifactCountParameters),
    ],
)
def test_count_parameters_are_optional_query_values_and_lists_repeat(
    document: dict[str, Any], path: str, model: type[PodCountParameters]
) -> None:
    """Every parameter is an optional query value; list fields are form-exploded."""
    parameters = document["paths"][path]["get"]["parameters"]
    lists = {"type", "pod_id", "artifact_id"}

    for parameter in parameters:
        assert parameter["in"] == "query"
        assert parameter["required"] is False
        assert parameter["description"]
        assert "null" not in json.dumps(parameter["schema"]), parameter
        if parameter["name"] in lists:
            assert parameter["style"] == "form"
            assert parameter["explode"] is True
            assert parameter["schema"]["type"] == "array"
        else:
            assert "explode" not in parameter
    assert {p["name"] for p in parameters} == {
        field.alias or name for name, field in model.model_fields.items()
    }


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """No ``$ref`` points at a schema or header the components lack."""
    found = list(refs(document))

    assert found
    for ref in found:
        resolve(document, ref)


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    """The document passes the OpenAPI 3.1 schema and loads for testing."""
    schema = schemathesis.openapi.from_dict(copy.deepcopy(document))

    schema.validate()

    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "gateway-analytics"
    assert document["info"]["version"] == version("gateway-analytics")
    loaded = [result.ok() for result in schema.get_all_operations()]
    assert len(loaded) == len(list(operations(document)))


def test_keyed_operations_declare_an_optional_bearer_key(
    document: dict[str, Any],
) -> None:
    """Ingest and counts may carry a bearer key and document 401 and 403."""
    keyed = {(method, path) for method, path, _ in operations(document)} & (
        {("post", EVENTS_PATH)}
        | {(method, path) for path in COUNT_PATHS for method in ("get", "head")}
    )

    for method, path, operation in operations(document):
        if (method, path) in keyed:
            assert operation["security"] == [{}, {"bearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
        else:
            assert "security" not in operation, (method, path)
    assert len(keyed) == 5
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == scheme | {"type": "http", "scheme": "bearer"}


def test_errors_the_code_sends_match_the_documented_error_body(
    document: dict[str, Any],
) -> None:
    """Event and parameter problems both fit the one documented error schema."""
    validator = component_validator(document, "ErrorBody")
    with pytest.raises(RequestError) as events_error:
        parse_events({"events": [{"type": "pod_entered"}]}, max_events=10)
    with pytest.raises(RequestError) as parameters_error:
        parse_parameters(PodCountParameters, {"page": "0", "from": "yesterday"})

    bodies = [error_body(events_error.value), error_body(parameters_error.value)]

    for body in bodies:
        assert list(validator.iter_errors(body)) == [], body
    assert "index" in bodies[0]["problems"][0]
    assert "index" not in bodies[1]["problems"][0]
    for status in ("400", "413", "503"):
        response = document["paths"][EVENTS_PATH]["post"]["responses"][status]
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_ingest_documents_the_batch_it_validates_and_the_answer_it_sends(
    document: dict[str, Any],
) -> None:
    """The request body is EventBatch, discriminated by type; 202 is Accepted."""
    operation = document["paths"][EVENTS_PATH]["post"]

    body = operation["requestBody"]["content"]["application/json"]["schema"]
    accepted = operation["responses"]["202"]["content"]["application/json"]

    assert body == {"$ref": "#/components/schemas/EventBatch"}
    events = document["components"]["schemas"]["EventBatch"]["properties"]["events"]
    assert events["items"]["discriminator"]["propertyName"] == "type"
    assert accepted["schema"] == {"$ref": "#/components/schemas/Accepted"}
    assert set(operation["responses"]) == {"202", "400", "401", "403", "413", "503"}
    assert "Retry-After" in operation["responses"]["503"]["headers"]


async def test_document_is_served_as_json_without_a_key(
    keyed_client: TestClient,  # type: ignore[type-arg]
) -> None:
    """With keys configured, the document still answers a request without one."""
    response = await keyed_client.get(OPENAPI_PATH)

    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    assert served == keyed_client.app[OPENAPI_DOCUMENT]  # type: ignore[index]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_counts_need_a_query_key_for_head_as_for_get(
    keyed_client: TestClient,  # type: ignore[type-arg]
    method: str,
) -> None:
    """HEAD runs the count query too, so it is refused without a key."""
    response = await keyed_client.request(method, "/api/analytics/pods")

    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
