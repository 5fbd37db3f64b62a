from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from herald_api.posts.schemas import (
    MAX_BODY_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    PostCreate,
    PostPatch,
)


def test_create_defaults_to_an_untagged_draft() -> None:
    post = PostCreate.model_validate({"title": "T", "body": ""})
    assert post.tags == []
    assert post.status == "draft"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"title": "t" * MAX_TITLE_CHARS}, id="longest-title"),
        pytest.param({"title": "é" * MAX_TITLE_CHARS}, id="longest-title-non-ascii"),
        pytest.param({"body": "b" * MAX_BODY_CHARS}, id="longest-body"),
        pytest.param({"body": ""}, id="empty-body"),
        pytest.param({"tags": [f"tag-{i}" for i in range(MAX_TAGS)]}, id="most-tags"),
        pytest.param({"tags": ["a" * 32]}, id="longest-tag"),
        pytest.param({"tags": ["0-9-a-z"]}, id="tag-alphabet"),
        pytest.param({"status": "published"}, id="published"),
    ],
)
def test_create_accepts_values_at_the_limits(fields: dict[str, Any]) -> None:
    post = PostCreate.model_validate({"title": "T", "body": "B"} | fields)
    for name, value in fields.items():
        assert getattr(post, name) == value


CREATE_REJECTS = [
    pytest.param({"title": "t" * (MAX_TITLE_CHARS + 1)}, id="title-too-long"),
    pytest.param({"title": ""}, id="title-empty"),
    pytest.param({"title": "   \t\n"}, id="title-blank"),
    pytest.param({"title": "a\x00b"}, id="title-nul"),
    pytest.param({"body": "b" * (MAX_BODY_CHARS + 1)}, id="body-too-long"),
    pytest.param({"body": "a\x00b"}, id="body-nul"),
    pytest.param({"tags": [f"tag-{i}" for i in range(MAX_TAGS + 1)]}, id="too-many-tags"),
    pytest.param({"tags": ["a" * 33]}, id="tag-too-long"),
    pytest.param({"tags": [""]}, id="tag-empty"),
    pytest.param({"tags": ["News"]}, id="tag-uppercase"),
    pytest.param({"tags": ["with space"]}, id="tag-space"),
    pytest.param({"tags": ["under_score"]}, id="tag-underscore"),
    pytest.param({"tags": ["ok\n"]}, id="tag-trailing-newline"),
    pytest.param({"tags": ["dup", "dup"]}, id="duplicate-tags"),
    pytest.param({"status": "archived"}, id="unknown-status"),
    pytest.param({"status": "Published"}, id="status-case"),
    pytest.param({"title": 123}, id="title-int"),
    pytest.param({"body": ["text"]}, id="body-list"),
    pytest.param({"tags": "news"}, id="tags-string"),
    pytest.param({"tags": ("news",)}, id="tags-tuple"),
    pytest.param({"tags": [1]}, id="tag-int"),
    pytest.param({"status": None}, id="status-null"),
    pytest.param({"title": None}, id="title-null"),
    pytest.param({"title": b"bytes"}, id="title-bytes"),
    pytest.param({"id": "8b0f5c9e-6a43-4c8e-9a53-0c1f9d6f3a11"}, id="server-owned-id"),
    pytest.param({"author_id": "8b0f5c9e-6a43-4c8e-9a53-0c1f9d6f3a11"}, id="server-owned-author"),
    pytest.param({"version": 7}, id="server-owned-version"),
    pytest.param({"created_at": "2026-01-01T00:00:00Z"}, id="server-owned-created-at"),
    pytest.param({"updated_at": "2026-01-01T00:00:00Z"}, id="server-owned-updated-at"),
    pytest.param({"published_at": "2026-01-01T00:00:00Z"}, id="server-owned-published-at"),
    pytest.param({"colour": "red"}, id="unknown-field"),
]


@pytest.mark.parametrize("fields", CREATE_REJECTS)
def test_create_rejects(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PostCreate.model_validate({"title": "T", "body": "B"} | fields)


@pytest.mark.parametrize("missing", ["title", "body"])
def test_create_requires_title_and_body(missing: str) -> None:
    fields = {"title": "T", "body": "B"}
    del fields[missing]
    with pytest.raises(ValidationError):
        PostCreate.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"title": "New"}, id="title"),
        pytest.param({"body": ""}, id="empty-body"),
        pytest.param({"tags": []}, id="clear-tags"),
        pytest.param({"status": "published"}, id="status"),
        pytest.param({"title": "New", "tags": ["a", "b"]}, id="several"),
    ],
)
def test_patch_keeps_only_the_fields_given(fields: dict[str, Any]) -> None:
    patch = PostPatch.model_validate(fields)
    assert patch.model_dump(exclude_unset=True) == fields


def test_empty_patch_is_rejected() -> None:
    with pytest.raises(ValidationError, match="at least one field"):
        PostPatch.model_validate({})


@pytest.mark.parametrize("name", ["title", "body", "tags", "status"])
def test_null_in_patch_is_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="must not be null"):
        PostPatch.model_validate({name: None})


@pytest.mark.parametrize(
    "fields",
    [param for param in CREATE_REJECTS if param.id not in {"status-null", "title-null"}],
)
def test_patch_applies_the_same_limits(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PostPatch.model_validate(fields)
