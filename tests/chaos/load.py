"""The load driver: a steady mix of writes and reads against the API, on loopback only, bounded
in request count and time, recording everything a ledger needs.

Each client works on the posts it created itself, so it always knows the version it last saw
and its If-Match is exact. Every attempted write is recorded as ok (a 2xx answer), failed (a
definite refusal: any other status, or a connection that never reached the server) or unknown
(a timeout or a connection broken mid-request: it may have been applied). Creates carry an
``Idempotency-Key``; ``settle()`` retries the unknown ones with the same key afterwards, as a
client should, and the replay tells whether the first try was applied. Every response's status,
latency and ``Retry-After`` is recorded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from tests.support.waiting import wait_until

_WORDS = [
    "herald",
    "event",
    "outbox",
    "broker",
    "cache",
    "replica",
    "worker",
    "stream",
    "ledger",
    "chaos",
    "quorum",
    "latency",
    "timeout",
    "breaker",
    "retry",
    "deliver",
    "enrich",
    "invalidate",
    "publish",
    "consume",
    "drain",
    "signal",
    "recover",
]


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Account:
    """An API key of an account of the scenario's own."""

    name: str
    account_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(slots=True)
class Write:
    """One attempted write and what became of it."""

    op: str  # create, update or delete
    account: Account
    post_id: uuid.UUID | None
    started: float
    idempotency_key: str | None = None
    title: str = ""
    #: What was sent (a create's retry sends the very same body with its key).
    body: dict[str, Any] | None = None
    outcome: Outcome = Outcome.UNKNOWN
    status: int | None = None
    #: The post's version after the write, when the answer said.
    version: int | None = None
    finished: float = 0.0
    error: str | None = None
    #: A later retry with the same Idempotency-Key answered with the stored response.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's result: its status (None when no response came) and timing."""

    at: float
    kind: str  # create, update, delete, get, list
    status: int | None
    seconds: float
    retry_after: str | None
    error: str | None
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """How hard to push: ``clients`` concurrent clients sharing ``rate`` requests a second,
    ``write_share`` of them writes, at most ``max_requests`` requests in all."""

    clients: int = 4
    rate: float = 30.0
    write_share: float = 0.5
    max_requests: int = 5000
    request_timeout: float = 10.0


@dataclass(slots=True)
class _Post:
    version: int
    account: Account


@dataclass(slots=True)
class _Client:
    index: int
    account: Account
    posts: dict[uuid.UUID, _Post] = field(default_factory=dict)


class LoadDriver:
    """Drives ``profile`` against ``endpoints`` (API base URLs, used round-robin) between
    ``start()`` and ``stop()``. Use ``set_endpoints`` to take an API out of rotation."""

    def __init__(
        self, endpoints: Sequence[str], accounts: Sequence[Account], profile: LoadProfile
    ) -> None:
        if not accounts:
            raise ValueError("the load needs at least one account")
        for url in endpoints:
            if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
                raise ValueError(f"the load driver talks to loopback only, not {url}")
        self.endpoints = list(endpoints)
        self.accounts = list(accounts)
        self.profile = profile
        self.writes: list[Write] = []
        self.answers: list[Answer] = []
        self._clients = [_Client(i, accounts[i % len(accounts)]) for i in range(profile.clients)]
        self._turn = 0
        self._sent = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(profile.request_timeout),
            limits=httpx.Limits(max_connections=profile.clients * 2),
        )
        self._random = random.Random(1234)

    # --- running ----------------------------------------------------------------------------

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        self.endpoints = list(endpoints)

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._run(client), name=f"load-client-{client.index}")
            for client in self._clients
        ]

    async def stop(self) -> None:
        """Stop sending; requests in flight finish (or time out) first."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def close(self) -> None:
        if self._tasks:
            self._stop.set()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    async def wait_ok_writes(self, count: int, *, seconds: float = 60.0) -> None:
        """Wait until ``count`` more writes than now have been accepted."""
        target = self.ok_writes() + count

        async def enough() -> bool:
            self._check_clients()
            return self.ok_writes() >= target

        await wait_until(enough, seconds=seconds, interval=0.05, message=f"{count} ok writes")

    async def run_for(self, seconds: float) -> None:
        """Let the load run ``seconds`` more (failing early if a client crashed)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._check_clients()
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def settle(self, *, seconds: float = 30.0) -> None:
        """Retry every unknown create with its Idempotency-Key until it has a definite answer."""
        pending = [w for w in self.writes if w.op == "create" and w.outcome is Outcome.UNKNOWN]
        deadline = time.monotonic() + seconds
        while pending and time.monotonic() < deadline:
            still = []
            for write in pending:
                await self._create(write, replay=True)
                if write.outcome is Outcome.UNKNOWN or write.status in (409, 429, 503):
                    write.outcome = Outcome.UNKNOWN
                    still.append(write)
            pending = still
            if pending:
                await asyncio.sleep(0.2)
        assert not pending, f"{len(pending)} create(s) still unknown after {seconds} s"

    # --- what happened ----------------------------------------------------------------------

    def ok_writes(self) -> int:
        return sum(1 for w in self.writes if w.outcome is Outcome.OK)

    def statuses(self, kinds: Sequence[str] | None = None) -> Counter[str]:
        """How many answers had each status ("error" when no response came)."""
        return Counter(
            str(a.status) if a.status is not None else "error"
            for a in self.answers
            if kinds is None or a.kind in kinds
        )

    def answers_between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.at <= end]

    def first_ok_write_after(self, moment: float) -> float | None:
        times = [w.finished for w in self.writes if w.outcome is Outcome.OK and w.started >= moment]
        return min(times) if times else None

    # --- the clients ------------------------------------------------------------------------

    def _check_clients(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{task.get_name()} crashed") from task.exception()

    def _endpoint(self) -> str:
        self._turn += 1
        return self.endpoints[self._turn % len(self.endpoints)]

    async def _run(self, client: _Client) -> None:
        interval = self.profile.clients / self.profile.rate
        next_at = time.monotonic() + self._random.random() * interval
        while not self._stop.is_set() and self._sent < self.profile.max_requests:
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
            next_at = max(next_at + interval, time.monotonic() - interval)
            self._sent += 1
            if self._random.random() < self.profile.write_share:
                await self._write(client)
            else:
                await self._read(client)

    async def _write(self, client: _Client) -> None:
        roll = self._random.random()
        if not client.posts or roll < 0.4:
            key = f"chaos-{uuid.uuid4()}"
            write = Write("create", client.account, None, time.monotonic(), key, title=key)
            self.writes.append(write)
            await self._create(write)
            if write.outcome is Outcome.OK and write.post_id is not None:
                client.posts[write.post_id] = _Post(write.version or 1, client.account)
                await self._read_back(client, write.post_id)
            return
        post_id = self._random.choice(list(client.posts))
        post = client.posts[post_id]
        op = "update" if roll < 0.85 else "delete"
        write = Write(op, client.account, post_id, time.monotonic())
        self.writes.append(write)
        if op == "update":
            await self._update(write, post)
        else:
            await self._delete(write, post)
        if write.outcome is Outcome.OK and op == "update" and write.version is not None:
            post.version = write.version
            await self._read_back(client, post_id)
        elif write.outcome is not Outcome.FAILED or write.status in (404, 412):
            # Deleted, or its state is no longer known for sure: leave it alone from now on.
            del client.posts[post_id]

    async def _read_back(self, client: _Client, post_id: uuid.UUID) -> None:
        """Half the time, read a post right after writing it, as clients do: the read caches
        the version before the worker enriches it, so the enrichment's invalidation matters."""
        if self._random.random() < 0.5:
            await self._request("get", "GET", f"/v1/posts/{post_id}", None, client.account.headers)

    def _body(self) -> dict[str, Any]:
        words = self._random.choices(_WORDS, k=self._random.randint(5, 60))
        return {
            "body": " ".join(words),
            "status": self._random.choice(("draft", "published")),
            "tags": self._random.sample(_WORDS, 2),
        }

    async def _create(self, write: Write, *, replay: bool = False) -> None:
        assert write.idempotency_key is not None
        headers = {**write.account.headers, "Idempotency-Key": write.idempotency_key}
        if write.body is None or not replay:
            write.body = {"title": write.title, **self._body()}
        response = await self._send(write, "create", "POST", "/v1/posts", write.body, headers)
        if response is not None and response.status_code == 201:
            data = response.json()
            write.post_id = uuid.UUID(data["id"])
            write.version = int(data["version"])
            write.replayed = response.headers.get("Idempotent-Replayed") == "true"

    async def _update(self, write: Write, post: _Post) -> None:
        headers = {**write.account.headers, "If-Match": f'"{post.version}"'}
        write.title = f"edit-{uuid.uuid4().hex[:12]}"
        body = {"title": write.title, **self._body()}
        response = await self._send(
            write, "update", "PATCH", f"/v1/posts/{write.post_id}", body, headers
        )
        if response is not None and response.status_code == 200:
            write.version = int(response.json()["version"])

    async def _delete(self, write: Write, post: _Post) -> None:
        headers = {**write.account.headers, "If-Match": f'"{post.version}"'}
        await self._send(write, "delete", "DELETE", f"/v1/posts/{write.post_id}", None, headers)

    async def _read(self, client: _Client) -> None:
        if client.posts and self._random.random() < 0.7:
            post_id = self._random.choice(list(client.posts))
            await self._request("get", "GET", f"/v1/posts/{post_id}", None, client.account.headers)
        else:
            params = "?status=published&limit=20"
            await self._request("list", "GET", f"/v1/posts{params}", None, client.account.headers)

    async def _send(
        self,
        write: Write,
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> httpx.Response | None:
        response, outcome, error = await self._request(kind, method, path, body, headers)
        write.finished = time.monotonic()
        write.outcome = outcome
        write.error = error
        write.status = response.status_code if response is not None else None
        return response

    async def _request(
        self,
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> tuple[httpx.Response | None, Outcome, str | None]:
        started = time.monotonic()
        response: httpx.Response | None = None
        error: str | None = None
        try:
            response = await self._http.request(
                method, self._endpoint() + path, json=body, headers=headers
            )
            outcome = Outcome.OK if response.status_code < 300 else Outcome.FAILED
        except httpx.ConnectError as exc:
            # Never reached the server: certainly not applied.
            outcome, error = Outcome.FAILED, repr(exc)
        except httpx.TransportError as exc:
            # Sent, but the answer never came (timeout, reset): it may have been applied.
            outcome, error = Outcome.UNKNOWN, repr(exc)
        finished = time.monotonic()
        self.answers.append(
            Answer(
                finished,
                kind,
                response.status_code if response is not None else None,
                finished - started,
                response.headers.get("Retry-After") if response is not None else None,
                error,
                response.headers.get("Content-Type", "") if response is not None else "",
            )
        )
        return response, outcome, error
