"""The committed JSON Schemas of event payloads, and the rule that keeps them a contract.

Each version of each event type has a file ``event_schemas/<type>.v<schema_version>.json``,
generated from the pydantic models in ``herald_shared.events``. The file of a type's current
version must equal what its model generates (regenerating is a deliberate, reviewed change), and
a change that would break consumers of the same version — a property removed, a property's type
changed, a property newly required — is refused: such a change needs a new ``schema_version``,
with the old version still decoded through ``RETIRED_DECODERS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald_shared.events import EVENT_TYPES, RETIRED_DECODERS, EventData

Schema = dict[str, Any]

SCHEMA_DIR = Path(__file__).with_name("event_schemas")

REGENERATE = "run `herald events schemas` to regenerate it"

#: Keywords that document a schema without changing which documents it accepts.
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "$comment",
        "readOnly",
        "writeOnly",
    }
)
_FILE_NAME = re.compile(r"^(?P<type>.+)\.v(?P<version>[1-9][0-9]*)\.json$")


def schema_filename(event_type: str, schema_version: int) -> str:
    return f"{event_type}.v{schema_version}.json"


def build_schema(model: type[EventData]) -> Schema:
    """The JSON Schema of one payload model, as consumers validate it."""
    return model.model_json_schema(mode="validation")


def render_schema(schema: Schema) -> str:
    """The stable file form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_schema(path: Path) -> Schema:
    schema: Schema = json.loads(path.read_text(encoding="utf-8"))
    return schema


class IncompatibleSchemaError(Exception):
    """A model changed in a way that breaks consumers of its current ``schema_version``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SchemaFile:
    event_type: str
    schema_version: int
    path: Path


def committed_files(directory: Path = SCHEMA_DIR) -> list[SchemaFile]:
    """Every schema file in ``directory``, sorted by type then version."""
    found = []
    for path in directory.glob("*.json"):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: not named <type>.v<schema_version>.json")
        found.append(SchemaFile(match["type"], int(match["version"]), path))
    return sorted(found, key=lambda f: (f.event_type, f.schema_version))


def compatibility_problems(old: Schema, new: Schema) -> list[str]:
    """What in ``new`` would break a consumer of documents valid under ``old``; empty if none.

    Breaking: a property removed, a property's type changed (anything that changes which values
    it accepts), a property required that was not. Adding an optional property is compatible,
    at any depth; annotations (titles, descriptions, defaults) are ignored.
    """
    return _compare(old, new, old_root=old, new_root=new, path="")


def _compare(
    old: Schema, new: Schema, *, old_root: Schema, new_root: Schema, path: str
) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    if _is_object(old) and _is_object(new):
        return _compare_objects(old, new, old_root=old_root, new_root=new_root, path=path)
    if old.get("type") == "array" and new.get("type") == "array":
        problems = _compare_rest(old, new, ("items",), old_root, new_root, path)
        return problems + _compare(
            old.get("items", {}),
            new.get("items", {}),
            old_root=old_root,
            new_root=new_root,
            path=f"{path}[]",
        )
    for union in ("anyOf", "oneOf"):
        if len(old.get(union, ())) == len(new.get(union, ())) > 0:
            problems = _compare_rest(old, new, (union,), old_root, new_root, path)
            for old_branch, new_branch in zip(old[union], new[union], strict=True):
                problems += _compare(
                    old_branch, new_branch, old_root=old_root, new_root=new_root, path=path
                )
            return problems
    if _signature(old, old_root) != _signature(new, new_root):
        return [f"{_label(path)}: type changed"]
    return []


def _compare_objects(
    old: Schema, new: Schema, *, old_root: Schema, new_root: Schema, path: str
) -> list[str]:
    old_props: dict[str, Schema] = old.get("properties", {})
    new_props: dict[str, Schema] = new.get("properties", {})
    old_required = set(old.get("required", ()))
    problems = _compare_rest(old, new, ("properties", "required"), old_root, new_root, path)
    for name in sorted(old_props.keys() - new_props.keys()):
        problems.append(f"{_child(path, name)}: property removed")
    for name in sorted(set(new.get("required", ())) - old_required):
        what = "required property added" if name not in old_props else "property is now required"
        problems.append(f"{_child(path, name)}: {what}")
    for name in sorted(old_props.keys() & new_props.keys()):
        problems += _compare(
            old_props[name],
            new_props[name],
            old_root=old_root,
            new_root=new_root,
            path=_child(path, name),
        )
    return problems


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _label(path: str) -> str:
    return path or "the payload"


def _compare_rest(
    old: Schema,
    new: Schema,
    handled: Iterable[str],
    old_root: Schema,
    new_root: Schema,
    path: str,
) -> list[str]:
    """Compare the keywords other than ``handled`` (e.g. ``additionalProperties``, ``minItems``)."""
    skip = {*handled, "$defs"}
    old_rest = {k: v for k, v in old.items() if k not in skip}
    new_rest = {k: v for k, v in new.items() if k not in skip}
    if _signature(old_rest, old_root) != _signature(new_rest, new_root):
        return [f"{_label(path)}: type changed"]
    return []


def _is_object(schema: Schema) -> bool:
    return schema.get("type") == "object" and "properties" in schema


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow local ``$ref`` pointers (``#/$defs/Name``) to the schema they name."""
    seen: set[str] = set()
    while isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/") and ref not in seen:
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _signature(schema: Any, root: Schema, seen: frozenset[str] = frozenset()) -> Any:
    """``schema`` with references inlined and annotations dropped: equal signatures accept the
    same documents (a recursive reference is kept by name)."""
    if isinstance(schema, list):
        return [_signature(item, root, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref not in seen:
        return _signature(_resolve(schema, root), root, seen | {ref})
    signature = {
        key: _signature(value, root, seen)
        if key != "properties"
        else _properties(value, root, seen)
        for key, value in schema.items()
        if key not in _ANNOTATIONS and key != "$defs"
    }
    if isinstance(signature.get("required"), list):
        signature["required"] = sorted(signature["required"])
    return signature


def _properties(properties: Any, root: Schema, seen: frozenset[str]) -> Any:
    # Property names are data here, not keywords: a property called "title" must be kept.
    if not isinstance(properties, dict):
        return properties
    return {name: _signature(value, root, seen) for name, value in properties.items()}


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write the file of every type's current version; returns the files that changed.

    Raises ``IncompatibleSchemaError`` (writing nothing) when a model changed incompatibly
    against the committed file of its own version.
    """
    problems = [
        problem
        for model in EVENT_TYPES.values()
        for problem in _incompatible_with_committed(model, directory)
    ]
    if problems:
        raise IncompatibleSchemaError(problems)
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for model in EVENT_TYPES.values():
        path = directory / schema_filename(model.type, model.schema_version)
        text = render_schema(build_schema(model))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def breaking_change_advice(model: type[EventData]) -> str:
    version = model.schema_version
    return (
        f"this would break consumers of {model.type} v{version}: raise "
        f"{model.__name__}.schema_version to {version + 1} and keep accepting v{version} "
        f"(keep the v{version} model in RETIRED_DECODERS in herald_shared/events.py), then "
        "run `herald events schemas`. Only if v"
        f"{version} was never released, delete {schema_filename(model.type, version)} instead."
    )


def _incompatible_with_committed(model: type[EventData], directory: Path) -> list[str]:
    path = directory / schema_filename(model.type, model.schema_version)
    if not path.exists():
        return []
    problems = compatibility_problems(load_schema(path), build_schema(model))
    if not problems:
        return []
    listed = "; ".join(problems)
    return [f"{model.type} v{model.schema_version}: {listed} — {breaking_change_advice(model)}"]


def check_current(model: type[EventData], directory: Path = SCHEMA_DIR) -> list[str]:
    """Problems of the committed file of ``model``'s current version against the model."""
    name = schema_filename(model.type, model.schema_version)
    path = directory / name
    if not path.exists():
        return [f"{model.type} v{model.schema_version}: {name} is missing; {REGENERATE}"]
    incompatible = _incompatible_with_committed(model, directory)
    if incompatible:
        return incompatible
    if load_schema(path) != build_schema(model):
        return [
            f"{model.type} v{model.schema_version}: {name} differs from the model (a compatible "
            f"change); {REGENERATE} and commit it"
        ]
    return []


def check_retired(schema_file: SchemaFile) -> list[str]:
    """Problems of a committed file that is not its type's current version."""
    label = f"{schema_file.event_type} v{schema_file.schema_version}"
    current = EVENT_TYPES.get(schema_file.event_type)
    if current is None:
        return [f"{label}: no event type {schema_file.event_type!r} in EVENT_TYPES"]
    if schema_file.schema_version > current.schema_version:
        return [f"{label}: newer than the current model (v{current.schema_version})"]
    decoder = RETIRED_DECODERS.get((schema_file.event_type, schema_file.schema_version))
    if decoder is None:
        return [
            f"{label}: committed but no longer decoded; keep its model in RETIRED_DECODERS "
            "in herald_shared/events.py"
        ]
    if (decoder.type, decoder.schema_version) != (
        schema_file.event_type,
        schema_file.schema_version,
    ):
        return [
            f"{label}: RETIRED_DECODERS maps it to {decoder.__name__}, which is "
            f"{decoder.type} v{decoder.schema_version}"
        ]
    problems = compatibility_problems(load_schema(schema_file.path), build_schema(decoder))
    return [f"{label}: its decoder {decoder.__name__} does not accept it ({p})" for p in problems]


def check_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Every problem of the committed files against the models; empty when they agree."""
    problems = [p for model in EVENT_TYPES.values() for p in check_current(model, directory)]
    current = {(m.type, m.schema_version) for m in EVENT_TYPES.values()}
    files = committed_files(directory)
    for schema_file in files:
        if (schema_file.event_type, schema_file.schema_version) not in current:
            problems += check_retired(schema_file)
    for event_type, version in sorted(RETIRED_DECODERS.keys() & current):
        problems.append(f"{event_type} v{version}: retired and current at once")
    committed = {(f.event_type, f.schema_version) for f in files}
    for event_type, version in sorted(RETIRED_DECODERS.keys() - committed):
        problems.append(
            f"{event_type} v{version}: a retired decoder without its committed "
            f"{schema_filename(event_type, version)}"
        )
    return problems
