"""The AsyncAPI 3 document of the events Herald publishes, generated from the committed schemas.

Built from what already is the contract — the committed payload schemas under
``event_schemas/`` (every version, retired ones included), the envelope model and the exchange
the topology declares — so it cannot say anything they do not. The committed ``asyncapi.json``
beside this module must equal ``render_document(build_document())``: regenerate it with
``herald events schemas`` (which writes the payload schemas first) and commit it. The API serves
it at ``/asyncapi.json``.

One channel per event type, addressed by its routing key on the topic exchange; one message per
committed schema version, whose payload is the envelope with ``type`` and ``schema_version``
fixed and ``data`` referring to that version's payload schema, with one sample event built from
that schema; one ``send`` operation per type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herald_shared.event_schemas import SCHEMA_DIR, SchemaFile, committed_files, load_schema
from herald_shared.events import EVENT_TYPES, EventEnvelope
from herald_shared.messaging.topology import exchange_name

Document = dict[str, Any]

DOCUMENT_PATH = Path(__file__).with_name("asyncapi.json")
ASYNCAPI_VERSION = "3.0.0"
#: The version of the events contract as a whole; the payloads carry their own versions.
CONTRACT_VERSION = "1.0.0"
DEFAULT_NAMESPACE = "herald"
_AMQP_BINDING_VERSION = "0.3.0"
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

_DESCRIPTION = f"""\
The events Herald publishes to RabbitMQ. Every event is a persistent JSON message on one durable
topic exchange, `<namespace>.events` (`HERALD_AMQP_NAMESPACE`, `{DEFAULT_NAMESPACE}` by default),
with the event's `type` as its routing key, its `id` as the AMQP `message-id` and its `type` as the
AMQP `type`. Events are delivered at least once: deduplicate on `id`; order by
`aggregate_version` within one `aggregate_id`.

Each payload version is a contract: adding an optional field keeps the version (ignore fields you
do not know); any other change publishes a new `schema_version`, and older versions stay listed
here while they may still be in flight. The W3C trace context of the request that caused an event
travels in the `traceparent` and `tracestate` headers.
"""


def _message_key(event_type: str, schema_version: int) -> str:
    return f"{event_type}.v{schema_version}"


def _operation_key(event_type: str) -> str:
    return "publish_" + event_type.replace(".", "_")


def _hoist_definitions(name: str, schema: dict[str, Any], into: dict[str, Any]) -> Any:
    """``schema`` with its ``$defs`` moved to components as ``<name>.<def>`` and its local
    references (``#/$defs/X``) pointing there, so they resolve inside the document."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: rewrite(value) for key, value in node.items() if key != "$defs"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = f"#/components/schemas/{name}.{ref.removeprefix('#/$defs/')}"
        return out

    for definition, value in sorted(schema.get("$defs", {}).items()):
        into[f"{name}.{definition}"] = rewrite(value)
    return rewrite(schema)


def _envelope_schema() -> dict[str, Any]:
    schema = EventEnvelope.model_json_schema(mode="serialization")
    # Every field is written on every event, defaults included.
    schema["required"] = list(schema["properties"])
    schema["description"] = (
        "The wire format of every event; `type` is also the routing key and `id` the AMQP "
        "message-id."
    )
    return schema


_EXAMPLE_ID = "0b6e2c5a-3f0e-4c1d-9a57-2f1f7e3c9d10"
_EXAMPLE_AGGREGATE = "5d9f3c1e-8a42-4b7e-b0c3-6e2a1f4d7c88"
_EXAMPLE_TIME = "2026-01-01T12:00:00Z"
_EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _sample(schema: Any, schemas: dict[str, Any]) -> Any:
    """A value ``schema`` accepts, the same on every run: the first enum value, the first
    branch that is not null, every property, one item per array."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return _sample(schemas[ref.removeprefix("#/components/schemas/")], schemas)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(union, ()) if b.get("type") != "null"]
        if branches:
            return _sample(branches[0], schemas)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _sample(value, schemas) for name, value in properties.items()}
    if kind == "array":
        return [_sample(schema.get("items", {}), schemas)]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "string":
        return {"uuid": _EXAMPLE_AGGREGATE, "date-time": _EXAMPLE_TIME}.get(
            schema.get("format", ""), "example"
        )
    return None


def _example(event_type: str, version: int, payload_key: str, schemas: dict[str, Any]) -> Any:
    return {
        "name": f"{event_type}.v{version}",
        "summary": "A sample event (values made up, shapes exact).",
        "headers": {"traceparent": _EXAMPLE_TRACEPARENT},
        "payload": {
            "id": _EXAMPLE_ID,
            "type": event_type,
            "schema_version": version,
            "occurred_at": _EXAMPLE_TIME,
            "aggregate_id": _EXAMPLE_AGGREGATE,
            "aggregate_version": 1,
            "data": _sample(schemas[payload_key], schemas),
        },
    }


def _message(schema_file: SchemaFile, payload_ref: str, current: bool) -> dict[str, Any]:
    event_type, version = schema_file.event_type, schema_file.schema_version
    model = EVENT_TYPES.get(event_type)
    summary = (model.__doc__ or "").strip().splitlines()[0] if model and model.__doc__ else ""
    status = "current" if current else "retired: still decoded, no longer published"
    return {
        "name": event_type,
        "title": f"{event_type} v{version}",
        "summary": summary or f"A {event_type} event.",
        "description": f"`{event_type}` with `schema_version` {version} ({status}).",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/TraceHeaders"},
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/EventEnvelope"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event_type},
                        "schema_version": {"const": version},
                        "data": {"$ref": payload_ref},
                    },
                },
            ]
        },
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": _AMQP_BINDING_VERSION}},
    }


def build_document(directory: Path = SCHEMA_DIR, *, namespace: str = DEFAULT_NAMESPACE) -> Document:
    """The AsyncAPI document for the schema files committed in ``directory``."""
    schemas: dict[str, Any] = {
        "EventEnvelope": _envelope_schema(),
        "TraceHeaders": {
            "type": "object",
            "description": "AMQP headers: the W3C trace context of the request behind the event.",
            "properties": {
                "traceparent": {"type": "string", "pattern": _TRACEPARENT},
                "tracestate": {"type": "string"},
            },
        },
    }
    messages: dict[str, Any] = {}
    by_type: dict[str, list[str]] = {}
    for schema_file in committed_files(directory):
        key = _message_key(schema_file.event_type, schema_file.schema_version)
        schemas[key] = _hoist_definitions(key, load_schema(schema_file.path), schemas)
        model = EVENT_TYPES.get(schema_file.event_type)
        current = model is not None and model.schema_version == schema_file.schema_version
        messages[key] = _message(schema_file, f"#/components/schemas/{key}", current)
        messages[key]["examples"] = [
            _example(schema_file.event_type, schema_file.schema_version, key, schemas)
        ]
        by_type.setdefault(schema_file.event_type, []).append(key)

    exchange = {
        "name": exchange_name(namespace),
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type, keys in sorted(by_type.items()):
        channels[event_type] = {
            "address": event_type,
            "title": event_type,
            "description": f"Routing key `{event_type}` on the `{exchange['name']}` exchange.",
            "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in keys},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": exchange,
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        }
        operations[_operation_key(event_type)] = {
            "action": "send",
            "title": f"Publish {event_type}",
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{key}"} for key in keys],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:herald:events",
        "info": {
            "title": "Herald events",
            "version": CONTRACT_VERSION,
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The deployment's RabbitMQ (`HERALD_AMQP_URL`).",
                "variables": {
                    "host": {"default": "localhost"},
                    "port": {"default": "5672"},
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render_document(document: Document) -> str:
    """The stable file form: two-space indent, keys in the order built, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_document(path: Path = DOCUMENT_PATH, directory: Path = SCHEMA_DIR) -> bool:
    """Write the document for ``directory``'s schema files; True when the file changed."""
    text = render_document(build_document(directory))
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def document_problems(path: Path = DOCUMENT_PATH, directory: Path = SCHEMA_DIR) -> list[str]:
    """Why the committed document is not what the committed schemas generate; empty if it is."""
    if not path.exists():
        return [f"{path.name} is missing; run `herald events schemas` to generate it"]
    if path.read_text(encoding="utf-8") != render_document(build_document(directory)):
        return [
            f"{path.name} differs from what the committed event schemas generate; run "
            "`herald events schemas` and commit it"
        ]
    return []
