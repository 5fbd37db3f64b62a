"""A client generated from the API's OpenAPI document by a common generator
(openapi-python-client) builds without a warning, and works against a real API process: create a
post, read it, list it, update it with If-Match (and see a stale one refused), delete it.

The client is generated at test time into the test's own directory, never committed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from herald_api.app import create_app
from herald_api.settings import Settings
from tests.contracts.conftest import StartContractApi

BIN = Path(sys.executable).parent
PACKAGE = "herald_client"


def generate(document: dict[str, Any], into: Path) -> str:
    """Generate the client package ``into/herald_client``; the generator's output."""
    (into / "openapi.json").write_text(json.dumps(document))
    finished = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(into / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(into / PACKAGE),
        ],
        cwd=into,
        # Its post-generation hooks run ruff, which lives beside it.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    return output


@pytest.fixture
def client_package(tmp_path: Path) -> Iterator[ModuleType]:
    output = generate(create_app(Settings()).openapi(), tmp_path)
    assert "warning" not in output.lower(), output
    assert "error" not in output.lower(), output
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.slow
async def test_a_generated_client_creates_reads_lists_updates_and_deletes_a_post(
    client_package: ModuleType, start_contract_api: StartContractApi
) -> None:
    api = await start_contract_api("client", {})  # the default budgets
    models = _module("models")
    create_post, get_post = _module("api.posts.create_post"), _module("api.posts.get_post")
    list_posts, update_post = _module("api.posts.list_posts"), _module("api.posts.update_post")
    delete_post = _module("api.posts.delete_post")
    tag = f"gen-{uuid.uuid4().hex[:8]}"

    async with client_package.AuthenticatedClient(
        base_url=api.base_url, token=api.token, raise_on_unexpected_status=True
    ) as client:
        created = await create_post.asyncio_detailed(
            client=client,
            body=models.PostCreate(
                title="Generated",
                body="Written by a generated client.",
                tags=[tag],
                status=models.PostCreateStatus.PUBLISHED,
            ),
            idempotency_key=f"generated-{tag}",
        )
        assert created.status_code == 201
        post = created.parsed
        assert isinstance(post, models.PostOut)
        assert post.title == "Generated"
        assert post.tags == [tag]
        assert created.headers["location"] == f"/v1/posts/{post.id}"
        etag = created.headers["etag"]

        read = await get_post.asyncio(post.id, client=client)
        assert isinstance(read, models.PostOut)
        assert (read.id, read.version, read.status) == (post.id, 1, models.PostOutStatus.PUBLISHED)

        page = await list_posts.asyncio(client=client, tag=tag, limit=10)
        assert isinstance(page, models.PostPage)
        assert [item.id for item in page.items] == [post.id]

        updated = await update_post.asyncio_detailed(
            post.id, client=client, body=models.PostPatch(title="Generated again"), if_match=etag
        )
        assert updated.status_code == 200
        assert isinstance(updated.parsed, models.PostOut)
        assert (updated.parsed.title, updated.parsed.version) == ("Generated again", 2)

        stale = await update_post.asyncio_detailed(
            post.id, client=client, body=models.PostPatch(title="Too late"), if_match=etag
        )
        assert stale.status_code == 412
        assert isinstance(stale.parsed, models.ProblemDetail)
        assert stale.parsed.type_ == "/problems/precondition-failed"

        deleted = await delete_post.asyncio_detailed(post.id, client=client)
        assert deleted.status_code == 204
        gone = await get_post.asyncio_detailed(post.id, client=client)
        assert gone.status_code == 404
        assert isinstance(gone.parsed, models.ProblemDetail)
