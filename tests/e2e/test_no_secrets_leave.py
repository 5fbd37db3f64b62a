"""Secrets never leave: through a whole scenario on real processes — keys created and revoked
with the operator command, posts written and listed page by page, webhooks registered, rotated
and delivered to a healthy, a refusing (4xx) and a failing receiver, bad keys, bad cursors and
bad bodies sent — no API key, key hash, webhook secret (old or new) or cursor secret appears in
any service's log (api, worker, cache-invalidator, at DEBUG), in the spans they wrote, in the
command's diagnostics, or in any HTTP response other than the one that hands a secret out."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from tests.conftest import MakeKey
from tests.integration.webhooks.conftest import FAST_WORKER_ENV
from tests.support.cli import run_herald
from tests.support.network import free_port
from tests.support.services import Processes
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, always

pytestmark = pytest.mark.slow


@dataclass
class Exchanges:
    """Every HTTP exchange of the scenario, and the secrets it handed out."""

    http: httpx.AsyncClient
    #: (label, text) of every response that must not hold a secret.
    texts: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def call(
        self, method: str, url: str, *, hands_out_secret: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = await self.http.request(method, url, **kwargs)
        self.statuses.append(response.status_code)
        if not hands_out_secret:
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
            label = f"{method} {url} → {response.status_code}"
            self.texts.append((label, headers + "\n\n" + response.text))
        return response


def spellings(secret: str | bytes) -> set[str]:
    """The forms a secret could be written in: as it is, hex, base64 and base64url."""
    if isinstance(secret, str):
        found = {secret}
        if secret.startswith("whsec_"):
            found.add(secret.removeprefix("whsec_"))
        if secret.startswith("hrld_"):
            found.add(secret.split("_", 2)[2])  # the part after the public key id
        return found
    return {
        secret.hex(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    }


def read_everything(directory: Path) -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(directory)), path.read_text(errors="replace"))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]


async def test_no_secret_reaches_a_log_a_span_or_an_error_body(
    settings: Settings,
    processes: Processes,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    database_dsn: str,
) -> None:
    cursor_secret = base64.b64encode(secrets.token_bytes(32)).decode()
    redis_url = settings.redis.url.get_secret_value()
    common = {
        "HERALD_LOG_LEVEL": "DEBUG",
        "HERALD_LOG_JSON": "true",
        "HERALD_CURSOR_SECRET": cursor_secret,
        "HERALD_REDIS_URL": redis_url,
    }
    webhooks_env = {
        **FAST_WORKER_ENV,
        "HERALD_WEBHOOKS_MAX_ATTEMPTS": "2",
        "HERALD_LOG_LEVEL": "DEBUG",
    }
    await processes.start_service("herald_worker", "worker", {**common, **webhooks_env})
    healthy, refusing, failing = (
        await Receiver(always(200)).start(),
        await Receiver(always(401)).start(),
        await Receiver(always(500)).start(),
    )
    needles: set[str] = set(spellings(cursor_secret))
    try:
        async with processes.invalidator(redis_url=redis_url, env=common):
            api, base_url = await processes.start_api(
                {
                    **common,
                    **{k: v for k, v in webhooks_env.items() if k.startswith("HERALD_WEBHOOKS")},
                    "HERALD_API_PROCESSES": "1",
                }
            )
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
                exchanges = Exchanges(http)
                cli = await scenario(
                    exchanges, make_key, db_pool, database_dsn, (healthy, refusing, failing)
                )
                needles |= cli.needles
            await api.stop()
    finally:
        for receiver in (healthy, refusing, failing):
            await receiver.stop()
    for service in processes.started:
        await service.stop()

    haystacks = [*read_everything(processes.log_dir), *exchanges.texts, *cli.diagnostics]
    # The scan is not vacuous: the services logged the scenario, refusals included.
    logs = {name: text for name, text in read_everything(processes.log_dir)}
    assert any(name.startswith("api") and "401" in text for name, text in logs.items())
    assert any(name.startswith("worker") and "webhook" in text for name, text in logs.items())
    assert {401, 400, 404, 422} <= set(exchanges.statuses)
    assert all(len(needle) >= 16 for needle in needles)
    leaks = [
        f"{where}: {needle[:6]}…"
        for where, text in haystacks
        for needle in needles
        if needle in text
    ]
    assert not leaks, leaks


@dataclass
class CliOutcome:
    needles: set[str]
    diagnostics: list[tuple[str, str]]


async def scenario(
    calls: Exchanges,
    make_key: MakeKey,
    db_pool: asyncpg.Pool,
    database_dsn: str,
    receivers: tuple[Receiver, Receiver, Receiver],
) -> CliOutcome:
    healthy, refusing, failing = receivers
    needles: set[str] = set()
    diagnostics: list[tuple[str, str]] = []
    env = {"HERALD_DB_DSN": database_dsn, "HERALD_LOG_LEVEL": "DEBUG"}

    # Keys: one from the operator command (the token on its last line), one revoked.
    created = await run_herald(["keys", "create", "--account", f"leak-{uuid.uuid4().hex[:8]}"], env)
    assert created.code == 0, created.output
    token = created.out.strip().splitlines()[-1]
    diagnostics.append(("herald keys create (stderr)", created.err))
    doomed = await run_herald(["keys", "create", "--account", f"gone-{uuid.uuid4().hex[:8]}"], env)
    doomed_token = doomed.out.strip().splitlines()[-1]
    doomed_id = doomed_token.split("_")[1]
    revoked = await run_herald(["keys", "revoke", doomed_id], env)
    assert revoked.code == 0, revoked.output
    diagnostics += [("herald keys (stderr)", doomed.err + revoked.err)]
    other = await make_key()
    for secret in (token, doomed_token, other.token):
        needles |= spellings(secret)
    for row in await db_pool.fetch("SELECT token_hash FROM api_keys"):
        needles |= spellings(bytes(row["token_hash"]))
    auth = {"Authorization": f"Bearer {token}"}

    # Posts, and the list page by page (signed cursors).
    post_ids = []
    for n in range(3):
        response = await calls.call(
            "POST",
            "/v1/posts",
            json={"title": f"Post {n}", "body": "words " * 20, "status": "published"},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        post_ids.append(response.json()["id"])
    page = await calls.call("GET", "/v1/posts", params={"limit": 1}, headers=auth)
    cursor = page.json()["next_cursor"]
    assert cursor
    await calls.call("GET", "/v1/posts", params={"limit": 1, "cursor": cursor}, headers=auth)
    # Failures: a tampered cursor, one used with other filters, bad bodies, missing things.
    await calls.call("GET", "/v1/posts", params={"cursor": cursor[:-2] + "xx"}, headers=auth)
    await calls.call("GET", "/v1/posts", params={"cursor": cursor, "tag": "x"}, headers=auth)
    await calls.call("POST", "/v1/posts", json={"title": "", "nope": 1}, headers=auth)
    await calls.call("GET", f"/v1/posts/{uuid.uuid4()}", headers=auth)
    await calls.call(
        "PATCH", f"/v1/posts/{post_ids[0]}", json={"title": "x"}, headers=auth | {"If-Match": '"9"'}
    )

    # Bad keys: none, garbage, a real key id with a wrong secret, a real token altered, another
    # scheme, a revoked key.
    key_id = token.split("_")[1]
    for authorization in (
        None,
        "Bearer not-a-key",
        f"Bearer hrld_{key_id}_{secrets.token_urlsafe(32)}",
        f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}",
        f"Basic {token}",
        f"Bearer {doomed_token}",
        f"Bearer {token} {token}",
    ):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await calls.call("GET", "/v1/posts", headers=headers)
        assert response.status_code == 401, (authorization and authorization[:12], response.text)

    # Webhooks: a healthy, a refusing and a failing receiver, and a port nobody listens on.
    hooks = {}
    for name, url in (
        ("healthy", healthy.url),
        ("refusing", refusing.url),
        ("failing", failing.url),
        ("closed", f"http://127.0.0.1:{free_port()}/hooks"),
    ):
        response = await calls.call(
            "POST",
            "/v1/webhooks",
            hands_out_secret=True,
            json={"url": url, "event_types": ["post.created"]},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        hooks[name] = response.json()
        needles |= spellings(hooks[name]["secret"])
    await calls.call(
        "POST", "/v1/webhooks", json={"url": "ftp://x", "event_types": []}, headers=auth
    )
    for name in ("healthy", "refusing"):
        rotated = await calls.call(
            "POST",
            f"/v1/webhooks/{hooks[name]['id']}/rotate-secret",
            hands_out_secret=True,
            headers=auth,
        )
        assert rotated.status_code == 200, rotated.text
        needles |= spellings(rotated.json()["secret"])
        if name == "healthy":
            healthy.secret = rotated.json()["secret"]
    # Another account asks for them: 404s.
    await calls.call("GET", f"/v1/webhooks/{hooks['healthy']['id']}", headers=other.headers)
    await calls.call(
        "POST", f"/v1/webhooks/{hooks['healthy']['id']}/rotate-secret", headers=other.headers
    )

    post = await calls.call(
        "POST",
        "/v1/posts",
        json={"title": "Hooked", "body": "hooked", "status": "published"},
        headers=auth,
    )
    assert post.status_code == 201, post.text
    await healthy.wait_for(
        lambda: bool(healthy.find("post.created", post.json()["id"])),
        message="the healthy receiver got the post, verified with the new secret",
    )
    ids = [uuid.UUID(hook["id"]) for hook in hooks.values()]

    async def settled() -> bool:
        rows = await db_pool.fetch(
            "SELECT status FROM webhook_deliveries WHERE webhook_id = ANY($1::uuid[])", ids
        )
        return len(rows) == len(ids) and all(row["status"] != "pending" for row in rows)

    await wait_until(settled, seconds=30, message="every delivery succeeded or died")
    assert len(refusing.requests) == 2
    assert len(failing.requests) == 2
    for hook in hooks.values():
        await calls.call("GET", f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        await calls.call("GET", f"/v1/webhooks/{hook['id']}", headers=auth)
    await calls.call("GET", "/v1/webhooks", headers=auth)
    # What the receivers were sent: signatures, never a secret.
    for receiver in receivers:
        for request in receiver.requests:
            diagnostics.append(
                (f"request to {receiver.url}", json.dumps(request.headers) + request.body.decode())
            )
    return CliOutcome(needles, diagnostics)
