"""The ledger check run after every scenario, once everything has drained.

The database's outbox is the list of events that exist: every accepted write put one there in
its transaction (and so did every unknown write that was in fact applied). Against it:

- every accepted write is in the outbox (no acknowledged write lost), and no create was applied
  twice for one Idempotency-Key;
- the outbox is drained, and the worker handled every event exactly once in its effects: every
  event logged as handled by a worker process (its handlers are idempotent by construction and
  keep no inbox record), enrichment applied to each post's last version and announced once per
  version, ``account_stats`` equal to a recount from ``posts``, one webhook delivery per
  (webhook, event);
- each healthy webhook subscriber received every event of its account at least once
  (duplicates are counted, and never exceed the attempts the delivery log recorded or the
  worker logged as unrecorded);
- the cache agrees with the database for every post: what is cached equals the row (an absent
  entry proves nothing by itself, so every post is read once through the API and checked again);
- every retry queue is empty and the dead-letter queues hold exactly what the scenario meant;
- every service process is alive, or was stopped on purpose and exited cleanly.

``check_ledger`` waits for the drain on conditions with a deadline, then returns a
``LedgerReport`` with the figures and the list of problems (empty when the promise was kept).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from herald_api.http.preconditions import etag_for
from herald_api.posts.reads import entry_of
from herald_api.posts.repository import fetch_post, is_enriched
from herald_shared.cache import CacheKeys, decode_entry
from herald_worker.text import count_words
from tests.chaos.load import LoadDriver, Outcome
from tests.chaos.subscribers import Subscriber
from tests.chaos.system import CONSUMERS, ChaosSystem, Service

WORKER_EVENT_TYPES = ("post.created", "post.updated", "post.deleted", "post.enriched")
#: Grace the consumers get when the ledger stops them (their configured grace is 5 s).
STOP_SECONDS = 15.0


@dataclass(slots=True)
class LedgerReport:
    scenario: str
    writes_attempted: int = 0
    writes_accepted: int = 0
    writes_failed: int = 0
    writes_unknown: int = 0
    events: int = 0
    events_lost: int = 0
    duplicate_effects: int = 0
    duplicate_deliveries: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    recovery_seconds: float | None = None
    drain_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        recovery = f"{self.recovery_seconds:.1f} s" if self.recovery_seconds is not None else "-"
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.scenario}: writes {self.writes_attempted} attempted, "
            f"{self.writes_accepted} accepted, {self.writes_unknown} unknown; "
            f"events {self.events}, lost {self.events_lost}, duplicate effects "
            f"{self.duplicate_effects}, duplicate deliveries {self.duplicate_deliveries}; "
            f"responses {{{statuses}}}; recovery {recovery}; drained in "
            f"{self.drain_seconds:.1f} s" + (f"; {'; '.join(self.notes)}" if self.notes else "")
        )


#: Every report of the run, for the terminal summary.
REPORTS: list[LedgerReport] = []


@dataclass(frozen=True, slots=True)
class _Event:
    id: uuid.UUID
    type: str
    aggregate_id: uuid.UUID
    version: int
    owner: uuid.UUID | None
    title: str | None
    published: bool


async def check_ledger(
    system: ChaosSystem,
    driver: LoadDriver,
    subscribers: Sequence[Subscriber],
    *,
    scenario: str,
    expected_dead_letters: Mapping[str, int] | None = None,
    drain_seconds: float = 90.0,
    recovery_seconds: float | None = None,
) -> LedgerReport:
    """Settle the load, wait for the drain, and check everything; see the module docstring."""
    report = LedgerReport(scenario, recovery_seconds=recovery_seconds)
    REPORTS.append(report)
    unknown_before = sum(1 for w in driver.writes if w.outcome is Outcome.UNKNOWN)
    await driver.settle()
    report.writes_attempted = len(driver.writes)
    report.writes_accepted = driver.ok_writes()
    report.writes_failed = sum(1 for w in driver.writes if w.outcome is Outcome.FAILED)
    report.writes_unknown = unknown_before
    report.statuses = driver.statuses()

    started = time.monotonic()
    events = await _wait_drained(system, subscribers, deadline=started + drain_seconds)
    report.drain_seconds = time.monotonic() - started
    report.events = len(events)

    report.problems += system.check_services()
    for service in system.services:
        if service.stopped is None and service.alive and not await service.ready():
            report.problems.append(f"{service.label} is alive but not ready")

    _check_writes(driver, events, report)
    await _check_worker(system, events, report)
    killed = sum(1 for s in system.services if s.label == "worker" and s.stopped == "killed")
    _check_subscribers(
        subscribers,
        events,
        report,
        await _deliveries(system, subscribers),
        workers_killed=killed,
    )
    await _stop_consumers(system, report)
    await _check_queues(system, report, expected_dead_letters or {})
    await _check_cache(system, driver, report)
    return report


async def _events(system: ChaosSystem) -> list[_Event]:
    rows = await system.db.fetch(
        "SELECT event_id, event_type, aggregate_id, aggregate_version, payload, "
        "published_at IS NOT NULL AS published FROM outbox ORDER BY id"
    )
    events = []
    for row in rows:
        payload = row["payload"]
        envelope = json.loads(payload) if isinstance(payload, str) else payload
        data = envelope.get("data", {})
        owner = data.get("author_id") or data.get("account_id")
        events.append(
            _Event(
                row["event_id"],
                row["event_type"],
                row["aggregate_id"],
                row["aggregate_version"],
                uuid.UUID(owner) if owner else None,
                data.get("title"),
                row["published"],
            )
        )
    return events


def handled_by_worker(system: ChaosSystem) -> set[uuid.UUID]:
    """The events some worker process logged as handled (its handlers' transaction committed;
    logged before the ack, so a worker killed after the log has its event handled again)."""
    return {
        uuid.UUID(str(record["event_id"]))
        for service in system.services
        if service.label == "worker"
        for record in service.log_records()
        if record.get("event") == "event handled" and record.get("outcome") == "ok"
    }


async def _wait_drained(
    system: ChaosSystem, subscribers: Sequence[Subscriber], *, deadline: float
) -> list[_Event]:
    """Wait (until ``deadline``) for the outbox to be published, the worker to have handled
    every event and each healthy subscriber to have received its events; the outbox's events."""
    while True:
        events = await _events(system)
        handled = handled_by_worker(system)
        drained = all(e.published for e in events) and all(
            e.id in handled for e in events if e.type in WORKER_EVENT_TYPES
        )
        for subscriber in subscribers:
            if subscriber.healthy:
                wanted = {e.id for e in events if subscriber.wants(e.type, e.owner)}
                drained = drained and wanted <= subscriber.received_ids()
        if drained:
            # The cache-invalidator keeps no record of its own: its queues must be empty.
            queues = system.queues("cache-invalidator")
            for name in (queues.main, *queues.retry_queues):
                drained = drained and not await system.queue_depth(name)
        if drained or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.2)


def _check_writes(driver: LoadDriver, events: list[_Event], report: LedgerReport) -> None:
    by_post: dict[uuid.UUID, list[_Event]] = {}
    for event in events:
        by_post.setdefault(event.aggregate_id, []).append(event)
    lost = []
    for write in driver.writes:
        if write.outcome is not Outcome.OK:
            continue
        found = by_post.get(write.post_id, []) if write.post_id else []
        wanted = {"create": "post.created", "update": "post.updated", "delete": "post.deleted"}
        if not any(
            e.type == wanted[write.op] and (write.op == "delete" or e.version == write.version)
            for e in found
        ):
            lost.append(f"{write.op} {write.post_id} v{write.version}")
    if lost:
        report.events_lost += len(lost)
        report.problems.append(f"{len(lost)} accepted write(s) have no event: {lost[:5]}")
    creates = Counter(
        e.title for e in events if e.type == "post.created" and (e.title or "").startswith("chaos-")
    )
    twice = {title: n for title, n in creates.items() if n > 1}
    if twice:
        report.duplicate_effects += sum(n - 1 for n in twice.values())
        report.problems.append(f"creates applied twice for one Idempotency-Key: {twice}")


async def _check_worker(system: ChaosSystem, events: list[_Event], report: LedgerReport) -> None:
    unpublished = [e.id for e in events if not e.published]
    if unpublished:
        report.events_lost += len(unpublished)
        report.problems.append(f"{len(unpublished)} outbox event(s) never published")
    handled = handled_by_worker(system)
    unhandled = [e.id for e in events if e.type in WORKER_EVENT_TYPES and e.id not in handled]
    if unhandled:
        report.events_lost += len(unhandled)
        report.problems.append(f"{len(unhandled)} event(s) never handled by the worker")
    posts = await system.db.fetch(
        "SELECT id, author_id, status, body, version, enriched_version FROM posts"
    )
    stale = [row["id"] for row in posts if row["enriched_version"] != row["version"]]
    if stale:
        report.problems.append(f"{len(stale)} post(s) not enriched at their last version")
    announced_twice = await system.db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE event_type = 'post.enriched' "
        "GROUP BY aggregate_id, aggregate_version HAVING count(*) > 1) AS twice"
    )
    if announced_twice:
        report.duplicate_effects += announced_twice
        report.problems.append(f"{announced_twice} post version(s) enriched more than once")
    expected: dict[uuid.UUID, tuple[int, int, int]] = {}
    for row in posts:
        drafts, published, words = expected.get(row["author_id"], (0, 0, 0))
        is_draft = row["status"] == "draft"
        expected[row["author_id"]] = (
            drafts + is_draft,
            published + (not is_draft),
            words + count_words(row["body"]),
        )
    stats = {
        row["account_id"]: (row["draft_posts"], row["published_posts"], row["total_words"])
        for row in await system.db.fetch("SELECT * FROM account_stats")
    }
    for account in expected.keys() | stats.keys():
        want = expected.get(account, (0, 0, 0))
        have = stats.get(account, (0, 0, 0))
        if want != have:
            report.duplicate_effects += 1
            report.problems.append(f"account_stats of {account} is {have}, a recount says {want}")
    contributions = await system.db.fetchval(
        "SELECT count(*) FROM posts p JOIN post_stats_contributions c "
        "ON c.post_id = p.id AND c.version = p.version"
    )
    if contributions != len(posts):
        report.problems.append(
            f"{len(posts) - contributions} post(s) counted at another version than their last"
        )


async def _deliveries(
    system: ChaosSystem, subscribers: Sequence[Subscriber]
) -> dict[tuple[uuid.UUID, uuid.UUID], tuple[str, int, int]]:
    """(webhook, event) → (status, attempts, rows) of every delivery to the subscribers.

    ``attempts`` counts the attempts the delivery log recorded plus those the worker made but
    could not record (it logs each one: the database was away when the answer came, so the
    lease ran out and the call was made again)."""
    rows = await system.db.fetch(
        "SELECT webhook_id, event_id, min(status) AS status, max(attempts) AS attempts, "
        "count(*) AS n, array_agg(id::text) AS ids FROM webhook_deliveries "
        "WHERE webhook_id = ANY($1::uuid[]) GROUP BY webhook_id, event_id",
        [s.webhook_id for s in subscribers],
    )
    unrecorded = Counter(
        str(record.get("delivery_id"))
        for service in system.services
        if service.label == "worker"
        for record in service.log_records()
        if record.get("event") == "could not record a webhook delivery"
    )
    return {
        (row["webhook_id"], row["event_id"]): (
            row["status"],
            row["attempts"] + sum(unrecorded[delivery] for delivery in row["ids"]),
            row["n"],
        )
        for row in rows
    }


def _check_subscribers(
    subscribers: Sequence[Subscriber],
    events: list[_Event],
    report: LedgerReport,
    deliveries: Mapping[tuple[uuid.UUID, uuid.UUID], tuple[str, int, int]],
    *,
    workers_killed: int,
) -> None:
    """``workers_killed``: a worker SIGKILLed during a call cannot record that attempt, so each
    such kill may add one delivery the log does not count."""
    known = {e.id for e in events}
    for subscriber in subscribers:
        wanted = {e.id for e in events if subscriber.wants(e.type, e.owner)}
        received = subscriber.receipts()
        unexpected = set(received) - known
        if unexpected:
            report.problems.append(
                f"{subscriber.name} received {len(unexpected)} event(s) nobody wrote"
            )
        rows = {event: deliveries.get((subscriber.webhook_id, event)) for event in wanted}
        missing_rows = [event for event, row in rows.items() if row is None]
        doubled = [event for event, row in rows.items() if row is not None and row[2] > 1]
        if missing_rows:
            report.events_lost += len(missing_rows)
            report.problems.append(
                f"{subscriber.name}: {len(missing_rows)} event(s) have no delivery row"
            )
        if doubled:
            report.duplicate_effects += len(doubled)
            report.problems.append(f"{subscriber.name}: {len(doubled)} event(s) fanned out twice")
        for event, count in received.items():
            row = deliveries.get((subscriber.webhook_id, event))
            attempts = row[1] if row is not None else 0
            if count > max(attempts, 1) + workers_killed:
                report.problems.append(
                    f"{subscriber.name} got {event} {count} times, more than its {attempts} "
                    f"attempt(s) (recorded or logged as unrecorded) and {workers_killed} "
                    "worker kill(s) explain"
                )
        if not subscriber.healthy:
            continue
        not_received = wanted - set(received)
        if not_received:
            report.events_lost += len(not_received)
            report.problems.append(
                f"{subscriber.name} never received {len(not_received)} of {len(wanted)} events"
            )
        report.duplicate_deliveries += sum(n - 1 for n in received.values() if n > 1)
        failed = [e for e, row in rows.items() if row is not None and row[0] != "succeeded"]
        if failed:
            report.problems.append(f"{subscriber.name}: {len(failed)} delivery(ies) not succeeded")


async def _stop_consumers(system: ChaosSystem, report: LedgerReport) -> None:
    """SIGTERM every running consumer: each must drain and exit 0 within its grace."""
    for consumer in CONSUMERS:
        for service in system.running(consumer):
            code, _ = await service.sigterm(STOP_SECONDS)
            if code != 0:
                report.problems.append(
                    f"{service.label} did not exit cleanly on SIGTERM ({code}):\n"
                    f"{service.log_tail(10)}"
                )


async def _check_queues(
    system: ChaosSystem, report: LedgerReport, expected_dead_letters: Mapping[str, int]
) -> None:
    for consumer in CONSUMERS:
        queues = system.queues(consumer)
        for name in (queues.main, *queues.retry_queues):
            depth = await system.queue_depth(name)
            if depth:
                report.problems.append(f"{name} still holds {depth} message(s)")
        dead = await system.queue_depth(queues.dead_letter) or 0
        report.dead_letters[consumer] = dead
        if dead != expected_dead_letters.get(consumer, 0):
            report.problems.append(
                f"{queues.dead_letter} holds {dead}, expected "
                f"{expected_dead_letters.get(consumer, 0)}"
            )


async def _check_cache(system: ChaosSystem, driver: LoadDriver, report: LedgerReport) -> None:
    """What is cached equals the row, for every post; deleted posts have no entry."""
    keys = CacheKeys(system.prefix)
    post_ids = {w.post_id for w in driver.writes if w.post_id is not None}
    authors = {w.post_id: w.account for w in driver.writes if w.post_id is not None}
    stale = await _compare_cache(system, keys, post_ids)
    if stale:
        report.problems.append(f"{len(stale)} cached post(s) differ from the database: {stale[:3]}")
    apis = [s for s in system.running("api") if s.alive]
    if not apis:
        report.problems.append("no API left running to read the posts through")
        return
    wrong_reads = []
    async with (
        httpx.AsyncClient(base_url=apis[0].health_url, timeout=10) as http,
        system.db.acquire() as conn,
    ):
        for post_id in post_ids:
            row = await fetch_post(conn, post_id)
            response = await http.get(f"/v1/posts/{post_id}", headers=authors[post_id].headers)
            if row is None:
                if response.status_code != 404:
                    wrong_reads.append(f"{post_id}: deleted, read {response.status_code}")
                continue
            etag = etag_for(row["version"], is_enriched(row))
            if response.status_code != 200 or response.headers.get("ETag") != etag:
                wrong_reads.append(
                    f"{post_id}: read {response.status_code} "
                    f"{response.headers.get('ETag')}, the row is {etag}"
                )
    if wrong_reads:
        report.problems.append(
            f"{len(wrong_reads)} read(s) disagree with the database: {wrong_reads[:3]}"
        )
    stale = await _compare_cache(system, keys, post_ids, require_present=True)
    if stale:
        report.problems.append(
            f"after reading every post, {len(stale)} entries differ: {stale[:3]}"
        )


async def _compare_cache(
    system: ChaosSystem,
    keys: CacheKeys,
    post_ids: set[uuid.UUID],
    *,
    require_present: bool = False,
) -> list[str]:
    problems = []
    client = system.redis_client()
    try:
        async with system.db.acquire() as conn:
            for post_id in post_ids:
                raw = await client.get(keys.post(post_id))
                row = await fetch_post(conn, post_id)
                if row is None:
                    if raw is not None:
                        problems.append(f"{post_id}: deleted but cached")
                    continue
                if raw is None:
                    if require_present:
                        problems.append(f"{post_id}: not cached after a read")
                    continue
                cached = decode_entry(raw if isinstance(raw, bytes) else raw.encode())
                expected = entry_of(row)
                if cached != expected:
                    have = cached.version if cached else "undecodable"
                    problems.append(f"{post_id}: cached revision {have}, row {expected.version}")
    finally:
        await client.aclose()
    return problems


def assert_kept(report: LedgerReport) -> None:
    """Fail with every problem the ledger found (the figures are printed either way)."""
    print(report.summary())
    assert not report.problems, "\n".join([report.summary(), *report.problems])


__all__ = ["REPORTS", "LedgerReport", "Service", "assert_kept", "check_ledger"]
