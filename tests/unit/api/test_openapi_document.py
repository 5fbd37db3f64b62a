"""The OpenAPI document is exact: every /v1 operation says how to authenticate, every problem it
can answer with, and the headers of each response; operation ids read well in generated code;
parameters and bodies carry the constraints the server enforces."""

from __future__ import annotations

import re
from typing import Any

import pytest

from herald_api.access.ratelimit import LimitResult
from herald_api.app import create_app
from herald_api.http.preconditions import ENTITY_TAGS_PATTERN
from herald_api.idempotency import KEY_PATTERN
from herald_api.paging.cursors import CURSOR_PATTERN
from herald_api.settings import Settings

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def v1_operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]


def test_the_bearer_scheme_guards_every_v1_operation(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"apiKey": {**schemes["apiKey"], "type": "http", "scheme": "bearer"}}
    operations = v1_operations(document)
    assert len(operations) >= 14
    unguarded = [name for name, op in operations if op.get("security") != [{"apiKey": []}]]
    assert unguarded == []
    # The probes and metrics are not behind a key.
    assert "security" not in document["paths"]["/livez"]["get"]


def test_every_v1_operation_declares_the_problems_any_request_can_meet(
    document: dict[str, Any],
) -> None:
    for name, operation in v1_operations(document):
        expected = {"401", "413", "429", "503"}
        if operation.get("parameters") or "requestBody" in operation:
            expected.add("422")
        if "requestBody" in operation:
            expected |= {"400", "415"}
        responses = operation["responses"]
        assert expected <= set(responses), (name, sorted(responses))
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (name, status)


def test_only_operations_that_can_answer_400_declare_it(document: dict[str, Any]) -> None:
    # A 400 comes from a malformed body, cursor, precondition header, Idempotency-Key or query.
    sources = {"If-Match", "If-None-Match", "Idempotency-Key", "cursor", "q"}
    for name, operation in v1_operations(document):
        can = "requestBody" in operation or any(
            parameter["name"] in sources for parameter in operation.get("parameters", [])
        )
        assert ("400" in operation["responses"]) == can, name


def _required_headers(response: dict[str, Any]) -> set[str]:
    return {name for name, header in response.get("headers", {}).items() if header["required"]}


def test_every_v1_response_declares_its_headers(document: dict[str, Any]) -> None:
    sent_by_the_limiter = {
        name.decode().lower()
        for name, _ in LimitResult(True, 10, 60, remaining=9, reset_seconds=5).headers()
    }
    for name, operation in v1_operations(document):
        for status, response in operation["responses"].items():
            headers = response["headers"]
            declared = {header.lower() for header in headers}
            assert {"x-request-id", "traceparent"} | sent_by_the_limiter <= declared, (
                name,
                status,
            )
            assert "X-Request-ID" in _required_headers(response)
            if status in ("429", "503"):
                assert "Retry-After" in _required_headers(response), (name, status)
            if status == "401":
                assert "WWW-Authenticate" in _required_headers(response), name
            if status == "412":
                assert "ETag" in _required_headers(response), name


def test_creates_declare_location_and_links_to_their_resource(document: dict[str, Any]) -> None:
    created = document["paths"]["/v1/posts"]["post"]["responses"]["201"]
    assert {"Location", "ETag"} <= _required_headers(created)
    assert {link["operationId"] for link in created["links"].values()} == {
        "get_post",
        "update_post",
        "delete_post",
    }
    read = document["paths"]["/v1/posts/{post_id}"]["get"]["responses"]
    assert {"ETag", "X-Cache"} <= _required_headers(read["200"])
    assert {"ETag"} <= _required_headers(read["304"])
    hook = document["paths"]["/v1/webhooks"]["post"]["responses"]["201"]
    assert "Location" in _required_headers(hook)
    assert len(hook["links"]) == 5


def test_operation_ids_are_unique_snake_case_names(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
        assert "v1" not in operation_id
    assert {"create_post", "get_post", "list_posts", "update_post", "delete_post"} <= set(ids)


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    assert isinstance(found, dict)
    return found


def test_no_parameter_can_be_null(document: dict[str, Any]) -> None:
    for name, operation in v1_operations(document):
        for parameter in operation.get("parameters", []):
            assert "anyOf" not in parameter["schema"], (name, parameter)
            assert parameter["schema"].get("type") != "null", (name, parameter)


def test_headers_and_cursors_carry_the_patterns_the_server_checks(
    document: dict[str, Any],
) -> None:
    if_match = _parameter(document, "/v1/posts/{post_id}", "patch", "If-Match")
    assert if_match["schema"]["pattern"] == ENTITY_TAGS_PATTERN
    if_none_match = _parameter(document, "/v1/posts/{post_id}", "get", "If-None-Match")
    assert if_none_match["schema"]["pattern"] == ENTITY_TAGS_PATTERN
    key = _parameter(document, "/v1/posts", "post", "Idempotency-Key")
    assert key["schema"]["pattern"] == KEY_PATTERN
    cursor = _parameter(document, "/v1/webhooks", "get", "cursor")
    assert cursor["schema"]["pattern"] == CURSOR_PATTERN
    q = _parameter(document, "/v1/search", "get", "q")
    assert q["required"] is True
    assert (q["schema"]["minLength"], q["schema"]["maxLength"]) == (1, 256)


def test_patch_bodies_have_no_nullable_field_and_at_least_one(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("PostPatch", "WebhookPatch"):
        schema = schemas[name]
        assert schema["minProperties"] == 1
        assert schema["additionalProperties"] is False
        for field, spec in schema["properties"].items():
            assert "anyOf" not in spec, (name, field)
            assert "default" not in spec, (name, field)
            assert "type" in spec or "enum" in spec, (name, field)
    tags = schemas["PostCreate"]["properties"]["tags"]
    assert (tags["maxItems"], tags["uniqueItems"]) == (10, True)
    assert "pattern" in schemas["PostCreate"]["properties"]["title"]
