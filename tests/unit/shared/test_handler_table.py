"""The handler table: handlers registered by event model, their dependencies bound at
registration, the queue's bindings derived from it; and mypy refusing a handler whose event or
dependencies do not fit."""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path

import pytest
from mypy import api as mypy_api

from herald_shared.db import Connection
from herald_shared.events import (
    EventData,
    EventEnvelope,
    PostCreated,
    PostDeleted,
    PostUpdated,
    WebhookDisabled,
)
from herald_shared.messaging.handlers import Event, HandlerTable, event_of

ROOT = Path(__file__).resolve().parents[3]


def created() -> EventEnvelope:
    payload = PostCreated(author_id=uuid.uuid4(), status="draft", title="t", tags=[])
    return EventEnvelope.wrap(payload, aggregate_id=uuid.uuid4(), aggregate_version=3)


async def test_handlers_run_in_order_with_their_dependencies_bound() -> None:
    calls: list[tuple[str, object, object]] = []

    async def first(event: Event[PostCreated], tx: Connection, *, label: str) -> None:
        calls.append((label, event.payload.title, tx))

    async def second(event: Event[EventData], *, label: str) -> None:
        calls.append((label, event.aggregate_version, None))

    table = HandlerTable()
    table.inbox(PostCreated, first, label="inbox")
    table.idempotent(PostCreated, second, label="idempotent")
    route = table.route("post.created", 1)
    assert route is not None
    assert route.model is PostCreated
    assert [step.uses_inbox for step in route.steps] == [True, False]
    assert route.uses_inbox

    envelope = created()
    event = event_of(envelope, PostCreated.model_validate(envelope.data), attempt=2)
    tx = object()
    for step in route.steps:
        await (step.call(event, tx) if step.takes_tx else step.call(event))
    assert calls == [("inbox", "t", tx), ("idempotent", 3, None)]


def test_an_idempotent_transactional_handler_takes_a_transaction_without_the_inbox() -> None:
    async def count(event: Event[PostCreated], tx: Connection) -> None:
        pass

    async def drop(event: Event[EventData]) -> None:
        pass

    table = HandlerTable()
    table.idempotent_tx(PostCreated, count)
    table.idempotent(PostCreated, drop)
    table.idempotent(PostDeleted, drop)
    created_route = table.route("post.created", 1)
    deleted_route = table.route("post.deleted", 1)
    assert created_route is not None
    assert deleted_route is not None
    steps = [(s.uses_inbox, s.takes_tx) for s in created_route.steps]
    assert steps == [(False, True), (False, False)]
    assert created_route.uses_transaction
    assert not created_route.uses_inbox
    assert not deleted_route.uses_transaction
    assert table.uses_database
    assert not table.uses_inbox


def test_the_event_carries_the_envelope_facts_and_the_typed_payload() -> None:
    envelope = created()
    payload = PostCreated.model_validate(envelope.data)
    event = event_of(envelope, payload, attempt=4)
    assert (event.id, event.type, event.aggregate_id, event.aggregate_version) == (
        envelope.id,
        "post.created",
        envelope.aggregate_id,
        3,
    )
    assert (event.occurred_at, event.attempt, event.payload) == (envelope.occurred_at, 4, payload)
    assert event.envelope is envelope


def test_the_bindings_are_the_types_the_table_handles() -> None:
    async def anything(event: Event[EventData]) -> None:
        pass

    assert HandlerTable().event_types == ()
    table = HandlerTable()
    for model in (WebhookDisabled, PostUpdated, PostCreated, PostUpdated):
        table.idempotent(model, anything)
    assert table.event_types == ("post.created", "post.updated", "webhook.disabled")
    assert not table.uses_inbox
    assert table.route("post.deleted", 1) is None
    assert table.route("post.created", 2) is None  # another schema version is not handled


def test_one_type_and_version_is_decoded_by_one_model() -> None:
    class SameType(PostCreated):
        pass

    async def handler(event: Event[EventData]) -> None:
        pass

    table = HandlerTable()
    table.idempotent(PostCreated, handler)
    with pytest.raises(ValueError, match="decoded by PostCreated already"):
        table.idempotent(SameType, handler)


def test_dependencies_must_be_keyword_arguments() -> None:
    async def handler(event: Event[PostDeleted], tx: Connection, dep: int) -> None:
        pass

    with pytest.raises(TypeError, match="keyword arguments"):
        HandlerTable().inbox(PostDeleted, handler, 1)


SNIPPET = """
    from herald_shared.db import Connection
    from herald_shared.events import EventData, PostCreated, PostDeleted, PostUpdated
    from herald_shared.messaging.handlers import Event, HandlerTable


    async def enrich(event: Event[PostCreated | PostUpdated], tx: Connection) -> None: ...
    async def invalidate(event: Event[EventData], *, cache: str) -> None: ...


    table = HandlerTable()
    table.inbox(PostCreated, enrich)
    table.inbox(PostUpdated, enrich)
    table.idempotent(PostDeleted, invalidate, cache="c")
    table.inbox(PostDeleted, enrich)  # error: the handler does not take PostDeleted
    table.idempotent(PostCreated, enrich)  # error: an inbox handler needs its transaction
    table.idempotent(PostCreated, invalidate, cache=1)  # error: a dependency of the wrong type
    table.idempotent(PostCreated, invalidate)  # error: a dependency missing
    table.inbox(str, enrich)  # error: not an event model
"""


def test_mypy_refuses_a_handler_that_does_not_fit_its_model(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    source = textwrap.dedent(SNIPPET)
    # mypy reports a module it has cached under the path it had then: match the file's name.
    snippet = tmp_path / "handler_registrations.py"
    snippet.write_text(source)
    expected = {number for number, line in enumerate(source.splitlines(), 1) if "# error" in line}
    # A cache kept between runs: a cold check of the shared library takes seconds.
    cache_plugin = getattr(pytestconfig, "cache", None)  # absent with -p no:cacheprovider
    cache = cache_plugin.mkdir("mypy-handler-table") if cache_plugin else tmp_path
    out, err, _ = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            str(snippet),
        ]
    )
    flagged = {
        int(found.group(1))
        for line in out.splitlines()
        if (found := re.match(r".*handler_registrations\.py:(\d+): error:", line))
    }
    assert flagged == expected, out + err
