"""The committed event schemas are a contract: the models must keep to them.

A type's current model must generate exactly its committed ``<type>.v<version>.json``; a change
that breaks consumers of that version fails with how to version it instead; every older version
still committed must still have a decoder. Consumers ignore what they do not know.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from herald_shared import event_schemas
from herald_shared.events import (
    EVENT_TYPES,
    RETIRED_DECODERS,
    EventData,
    EventEnvelope,
    PostCreated,
    decoder_for,
)


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_current_version_matches_its_committed_schema(model: type[EventData]) -> None:
    problems = event_schemas.check_current(model)
    assert not problems, "\n".join(problems)


def test_every_committed_older_version_is_still_decoded() -> None:
    current = {(m.type, m.schema_version) for m in EVENT_TYPES.values()}
    problems = [
        problem
        for schema_file in event_schemas.committed_files()
        if (schema_file.event_type, schema_file.schema_version) not in current
        for problem in event_schemas.check_retired(schema_file)
    ]
    assert not problems, "\n".join(problems)


def test_the_whole_directory_agrees_with_the_models() -> None:
    # The same check `herald events schemas --check` runs, including orphaned files and
    # retired decoders whose schema file is missing.
    problems = event_schemas.check_schemas()
    assert not problems, "\n".join(problems)


def test_committed_files_are_in_their_stable_form() -> None:
    for schema_file in event_schemas.committed_files():
        text = schema_file.path.read_text(encoding="utf-8")
        assert text == event_schemas.render_schema(json.loads(text)), schema_file.path.name


def test_each_current_type_has_a_file_named_by_type_and_version() -> None:
    committed = {(f.event_type, f.schema_version) for f in event_schemas.committed_files()}
    assert {(m.type, m.schema_version) for m in EVENT_TYPES.values()} <= committed
    assert {f.path.name for f in event_schemas.committed_files()} >= {
        "post.created.v1.json",
        "post.updated.v1.json",
        "post.deleted.v1.json",
    }


def test_retired_decoders_are_keyed_by_their_own_type_and_version() -> None:
    for key, model in RETIRED_DECODERS.items():
        assert key == (model.type, model.schema_version), model
        assert decoder_for(*key) is model
        assert EVENT_TYPES[model.type].schema_version > model.schema_version, model


def _created_envelope() -> dict[str, object]:
    envelope = EventEnvelope.wrap(
        PostCreated(
            author_id=uuid.uuid4(),
            status="published",
            title="Hello",
            tags=["a"],
            published_at=datetime(2026, 1, 2, tzinfo=UTC),
        ),
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
    )
    wire: dict[str, object] = json.loads(envelope.model_dump_json())
    return wire


def test_consumers_ignore_unknown_envelope_and_payload_fields() -> None:
    wire = _created_envelope()
    data = dict(wire["data"])  # type: ignore[call-overload]
    newer = {**wire, "partition": 7, "data": {**data, "mood": "cheerful", "word_count": 250}}

    envelope = EventEnvelope.model_validate_json(json.dumps(newer))
    payload = envelope.payload()

    assert isinstance(payload, PostCreated)
    assert payload.model_dump(mode="json") == data
    assert not hasattr(payload, "mood")
    assert str(envelope.id) == wire["id"]


def test_payload_is_decoded_by_type_and_schema_version() -> None:
    wire = _created_envelope()
    assert isinstance(EventEnvelope.model_validate(wire).payload(), PostCreated)
    unknown_version = {**wire, "schema_version": PostCreated.schema_version + 1}
    with pytest.raises(KeyError):
        EventEnvelope.model_validate(unknown_version).payload()
    with pytest.raises(KeyError):
        EventEnvelope.model_validate({**wire, "type": "post.unheard.of"}).payload()
