"""Rules the request bodies share: text PostgreSQL can store, text that says something, lists
without repeats, and the shape of a partial update (``PATCH``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Self, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

H = TypeVar("H", bound=Hashable)


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


class PartialUpdate(StrictBody):
    """A PATCH body: only the fields present change; ``null`` is not a value."""

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("at least one field must be given")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be null")
        return self
