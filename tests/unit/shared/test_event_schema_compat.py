"""The compatibility checker, the schema files and ``herald events schemas``, on small models."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from herald_shared import event_schemas
from herald_shared.event_schemas import build_schema, compatibility_problems
from herald_shared.events import EVENT_TYPES, RETIRED_DECODERS, EventData, EventEnvelope
from tests.support.cli import invoke_herald


class Thing(EventData):
    type: ClassVar[str] = "test.thing"
    count: int
    label: str | None = None
    state: Literal["on", "off"] = "on"


class ThingWithoutCount(EventData):
    type: ClassVar[str] = "test.thing"
    label: str | None = None
    state: Literal["on", "off"] = "on"


class ThingCountRetyped(EventData):
    type: ClassVar[str] = "test.thing"
    count: str
    label: str | None = None
    state: Literal["on", "off"] = "on"


class ThingNewRequired(Thing):
    colour: str


class ThingNewOptional(Thing):
    colour: str | None = None
    weight: float = 1.0


class ThingLabelRequired(EventData):
    type: ClassVar[str] = "test.thing"
    count: int
    label: str | None
    state: Literal["on", "off"] = "on"


class ThingStateWidened(EventData):
    type: ClassVar[str] = "test.thing"
    count: int
    label: str | None = None
    state: Literal["on", "off", "broken"] = "on"


class ThingDocumented(EventData):
    """Only annotations differ: titles, descriptions, defaults."""

    type: ClassVar[str] = "test.thing"
    count: int = Field(description="How many.", title="The count")
    label: str | None = Field(default="none", description="A label.")
    state: Literal["on", "off"] = "off"


def problems(old: type[EventData], new: type[EventData]) -> list[str]:
    return compatibility_problems(build_schema(old), build_schema(new))


def test_identical_models_are_compatible() -> None:
    assert problems(Thing, Thing) == []


def test_a_removed_property_is_incompatible() -> None:
    assert problems(Thing, ThingWithoutCount) == ["count: property removed"]


def test_a_changed_property_type_is_incompatible() -> None:
    assert problems(Thing, ThingCountRetyped) == ["count: type changed"]


def test_a_new_required_property_is_incompatible() -> None:
    assert problems(Thing, ThingNewRequired) == ["colour: required property added"]


def test_an_optional_property_made_required_is_incompatible() -> None:
    assert problems(Thing, ThingLabelRequired) == ["label: property is now required"]


def test_a_widened_enum_is_incompatible() -> None:
    # Consumers of v1 do not know the new value.
    assert problems(Thing, ThingStateWidened) == ["state: type changed"]


def test_new_optional_properties_are_compatible() -> None:
    assert problems(Thing, ThingNewOptional) == []


def test_annotations_do_not_matter() -> None:
    assert build_schema(Thing) != build_schema(ThingDocumented)
    assert problems(Thing, ThingDocumented) == []


class Part(BaseModel):
    name: str
    size: int


class PartWithOptional(BaseModel):
    name: str
    size: int
    note: str | None = None


class PartWithoutSize(BaseModel):
    name: str


class Assembly(EventData):
    type: ClassVar[str] = "test.assembly"
    parts: list[Part]
    main: Part | None = None


class AssemblyPartsGrew(EventData):
    type: ClassVar[str] = "test.assembly"
    parts: list[PartWithOptional]
    main: PartWithOptional | None = None


class AssemblyPartsShrank(EventData):
    type: ClassVar[str] = "test.assembly"
    parts: list[PartWithoutSize]
    main: PartWithoutSize | None = None


def test_nested_models_follow_the_same_rules() -> None:
    assert problems(Assembly, AssemblyPartsGrew) == []
    assert problems(Assembly, AssemblyPartsShrank) == [
        "main.size: property removed",
        "parts[].size: property removed",
    ]


def test_a_property_named_like_a_keyword_is_still_a_property() -> None:
    class Titled(EventData):
        type: ClassVar[str] = "test.titled"
        title: str
        description: str

    class Untitled(EventData):
        type: ClassVar[str] = "test.titled"
        description: str

    class Retitled(EventData):
        type: ClassVar[str] = "test.titled"
        title: int
        description: str

    assert problems(Titled, Untitled) == ["title: property removed"]
    assert problems(Titled, Retitled) == ["title: type changed"]


def test_rendered_files_are_stable() -> None:
    text = event_schemas.render_schema(build_schema(Thing))
    assert text.endswith("}\n")
    assert text == event_schemas.render_schema(json.loads(text))
    keys = list(json.loads(text))
    assert keys == sorted(keys)


def wire(model: type[EventData], version: int, data: dict[str, object]) -> EventEnvelope:
    return EventEnvelope(
        type=model.type,
        schema_version=version,
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        data=data,
    )


class ThingV2(EventData):
    """The incompatible successor of ``Thing``."""

    type: ClassVar[str] = "test.thing"
    schema_version: ClassVar[int] = 2
    count: str


def test_versioning_workflow_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit v1; a breaking change to v1 is refused; v2 is accepted once v1 keeps a decoder."""
    monkeypatch.setitem(EVENT_TYPES, Thing.type, Thing)
    event_schemas.write_schemas(tmp_path)
    assert (tmp_path / "test.thing.v1.json").read_text() == event_schemas.render_schema(
        build_schema(Thing)
    )
    assert event_schemas.check_schemas(tmp_path) == []

    monkeypatch.setitem(EVENT_TYPES, Thing.type, ThingWithoutCount)
    [problem] = event_schemas.check_schemas(tmp_path)
    assert "test.thing v1: count: property removed" in problem
    assert "raise ThingWithoutCount.schema_version to 2 and keep accepting v1" in problem
    with pytest.raises(event_schemas.IncompatibleSchemaError):
        event_schemas.write_schemas(tmp_path)
    assert event_schemas.load_schema(tmp_path / "test.thing.v1.json") == build_schema(Thing)

    monkeypatch.setitem(EVENT_TYPES, Thing.type, ThingNewOptional)
    [problem] = event_schemas.check_schemas(tmp_path)
    assert "differs from the model (a compatible change)" in problem
    assert event_schemas.write_schemas(tmp_path) == [tmp_path / "test.thing.v1.json"]
    assert event_schemas.check_schemas(tmp_path) == []

    monkeypatch.setitem(EVENT_TYPES, Thing.type, ThingV2)
    event_schemas.write_schemas(tmp_path)
    [problem] = event_schemas.check_schemas(tmp_path)
    assert problem.startswith("test.thing v1: committed but no longer decoded")

    monkeypatch.setitem(RETIRED_DECODERS, (Thing.type, 1), ThingWithoutCount)
    found = event_schemas.check_schemas(tmp_path)
    assert (
        "test.thing v1: its decoder ThingWithoutCount does not accept it (count: property removed)"
        in found
    )

    monkeypatch.setitem(RETIRED_DECODERS, (Thing.type, 1), ThingNewOptional)
    assert event_schemas.check_schemas(tmp_path) == []
    old = wire(Thing, 1, {"count": 3, "colour": "red"}).payload()
    new = wire(ThingV2, 2, {"count": "three"}).payload()
    assert isinstance(old, ThingNewOptional)
    assert old.count == 3
    assert isinstance(new, ThingV2)
    with pytest.raises(KeyError):
        wire(ThingV2, 3, {"count": "three"}).payload()


def test_a_retired_decoder_needs_its_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(EVENT_TYPES, ThingV2.type, ThingV2)
    monkeypatch.setitem(RETIRED_DECODERS, (Thing.type, 1), Thing)
    event_schemas.write_schemas(tmp_path)
    assert event_schemas.check_schemas(tmp_path) == [
        "test.thing v1: a retired decoder without its committed test.thing.v1.json"
    ]


def test_cli_writes_then_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EVENT_TYPES, Thing.type, Thing)

    check = invoke_herald(["events", "schemas", "--check", "--directory", str(tmp_path)])
    assert check.code == 1
    assert "test.thing.v1.json is missing" in check.output

    written = invoke_herald(["events", "schemas", "--directory", str(tmp_path)])
    assert written.code == 0, written.output
    assert (tmp_path / "test.thing.v1.json").exists()
    assert (tmp_path / "post.created.v1.json").exists()
    ok = invoke_herald(["events", "schemas", "--check", "--directory", str(tmp_path)])
    assert ok.code == 0, ok.output

    schema = event_schemas.load_schema(tmp_path / "post.deleted.v1.json")
    schema["required"].append("reason")
    schema["properties"]["reason"] = {"type": "string"}
    (tmp_path / "post.deleted.v1.json").write_text(event_schemas.render_schema(schema))
    tampered = invoke_herald(["events", "schemas", "--check", "--directory", str(tmp_path)])
    assert tampered.code == 1
    assert "post.deleted v1: reason: property removed" in tampered.output

    monkeypatch.setitem(EVENT_TYPES, Thing.type, ThingCountRetyped)
    refused = invoke_herald(["events", "schemas", "--directory", str(tmp_path)])
    assert refused.code == 1
    assert "test.thing v1: count: type changed" in refused.output
    assert "raise ThingCountRetyped.schema_version to 2" in refused.output


def test_cli_check_passes_on_the_committed_files() -> None:
    result = invoke_herald(["events", "schemas", "--check"])
    assert result.code == 0, result.output
