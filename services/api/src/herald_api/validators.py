"""Rules the request bodies share: text PostgreSQL can store, text that says something, lists
without repeats, and the shape of a partial update (``PATCH``).

Each rule on text has a pattern saying the same thing for the OpenAPI document (the validators
give the clearer messages); ``tests/unit/api/test_validators.py`` holds the two to each other.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

H = TypeVar("H", bound=Hashable)

#: Every character ``str.isspace()`` is true for (what ``str.strip()`` removes), as a class body.
SPACE_CLASS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Text without NUL (``no_nul``).
NO_NUL_PATTERN = r"^[^\x00]*$"
#: Text without NUL with at least one character that is not white space (``no_nul`` and
#: ``not_blank``).
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{SPACE_CLASS}][^\x00]*$"


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def unique(items: str) -> Callable[[list[H]], list[H]]:
    """A validator refusing repeats in a list; ``items`` names them in the message."""

    def check(values: list[H]) -> list[H]:
        if len(set(values)) != len(values):
            raise ValueError(f"{items} must be unique")
        return values

    return check


class StrictBody(BaseModel):
    """A request body: unknown fields are refused, and values are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _without_nulls(schema: dict[str, Any]) -> None:
    """A PATCH body's schema as it is checked: every field optional, none of them nullable (the
    ``None`` default only says "absent"), and at least one present."""
    for field in schema.get("properties", {}).values():
        branches = field.pop("anyOf", None)
        if branches is not None:
            (kept,) = [b for b in branches if b.get("type") != "null"]
            field.update(kept)
        field.pop("default", None)
    schema["minProperties"] = 1


class PartialUpdate(StrictBody):
    """A PATCH body: only the fields present change; ``null`` is not a value."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _without_nulls(schema))

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("at least one field must be given")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be null")
        return self
