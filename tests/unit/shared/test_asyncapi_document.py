"""The AsyncAPI document is generated from the committed event schemas and cannot drift: the
committed ``asyncapi.json`` is exactly what they generate, and it lists every committed version
of every event type with that version's schema as its payload's ``data``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from herald_cli.main import app
from herald_shared import asyncapi, event_schemas
from herald_shared.events import EVENT_TYPES, EventEnvelope
from herald_shared.messaging.topology import exchange_name


def test_regenerating_gives_the_committed_document() -> None:
    committed = asyncapi.DOCUMENT_PATH.read_text(encoding="utf-8")
    assert committed == asyncapi.render_document(asyncapi.build_document()), (
        "asyncapi.json is stale: run `herald events schemas` and commit it"
    )
    assert asyncapi.document_problems() == []


def test_every_committed_schema_version_is_a_message_with_its_schema() -> None:
    document = json.loads(asyncapi.DOCUMENT_PATH.read_text(encoding="utf-8"))
    files = event_schemas.committed_files()
    assert files
    assert set(document["channels"]) == {f.event_type for f in files} >= set(EVENT_TYPES)
    for schema_file in files:
        key = f"{schema_file.event_type}.v{schema_file.schema_version}"
        assert document["components"]["schemas"][key] == event_schemas.load_schema(schema_file.path)
        message = document["components"]["messages"][key]
        fixed = message["payload"]["allOf"][1]["properties"]
        assert fixed["type"] == {"const": schema_file.event_type}
        assert fixed["schema_version"] == {"const": schema_file.schema_version}
        assert fixed["data"] == {"$ref": f"#/components/schemas/{key}"}
        channel = document["channels"][schema_file.event_type]
        assert channel["address"] == schema_file.event_type
        assert channel["bindings"]["amqp"]["exchange"]["name"] == exchange_name("herald")
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "topic"
        assert key in channel["messages"]
    envelope = document["components"]["schemas"]["EventEnvelope"]
    assert set(envelope["required"]) == {
        "id",
        "type",
        "schema_version",
        "occurred_at",
        "aggregate_id",
        "aggregate_version",
        "data",
    }


def test_a_changed_schema_file_changes_the_document(tmp_path: Path) -> None:
    """A new version committed beside the others appears, with its definitions moved where
    references inside the document resolve."""
    directory = tmp_path / "event_schemas"
    shutil.copytree(event_schemas.SCHEMA_DIR, directory)
    v2 = {
        "$defs": {"Tag": {"type": "string", "maxLength": 32}},
        "properties": {"tags": {"items": {"$ref": "#/$defs/Tag"}, "type": "array"}},
        "required": ["tags"],
        "title": "PostCreated",
        "type": "object",
    }
    (directory / "post.created.v2.json").write_text(json.dumps(v2), encoding="utf-8")
    document = asyncapi.build_document(directory)
    assert document != asyncapi.build_document()
    schemas = document["components"]["schemas"]
    assert schemas["post.created.v2.Tag"] == {"type": "string", "maxLength": 32}
    assert schemas["post.created.v2"]["properties"]["tags"]["items"] == {
        "$ref": "#/components/schemas/post.created.v2.Tag"
    }
    assert "$defs" not in schemas["post.created.v2"]
    assert list(document["channels"]["post.created"]["messages"]) == [
        "post.created.v1",
        "post.created.v2",
    ]
    path = tmp_path / "asyncapi.json"
    assert asyncapi.write_document(path, directory)
    assert not asyncapi.write_document(path, directory)
    assert asyncapi.document_problems(path, directory) == []
    assert asyncapi.document_problems(path) != []


def test_the_check_command_accepts_the_committed_document() -> None:
    result = CliRunner().invoke(app, ["events", "schemas", "--check"])
    assert result.exit_code == 0, result.output


def test_every_example_is_valid_for_its_message_and_decodes_with_the_models() -> None:
    document = json.loads(asyncapi.DOCUMENT_PATH.read_text(encoding="utf-8"))
    # The document's references, resolvable by a plain JSON Schema validator.
    registry: Registry[Any] = Registry().with_resource(
        "urn:herald:events", Resource.from_contents(document, default_specification=DRAFT7)
    )
    messages = document["components"]["messages"]
    assert messages
    for key, message in messages.items():
        assert message["examples"], key
        for example in message["examples"]:
            for part in ("payload", "headers"):
                pointer = f"/components/messages/{key}/{part}"
                schema = {"$ref": f"urn:herald:events#{pointer}"}
                validator = Draft7Validator(schema, registry=registry)
                errors = [e.message for e in validator.iter_errors(example[part])]
                assert not errors, (key, part, errors)
            envelope = EventEnvelope.model_validate(example["payload"])
            decoded = envelope.payload()
            assert (decoded.type, decoded.schema_version) == (
                envelope.type,
                envelope.schema_version,
            )
