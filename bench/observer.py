"""When did the worker's enrichment of each post become visible? A process of its own that
LISTENs for the notifications the pipeline's trigger sends, and writes when each arrived.

The pipeline installs, in the run's own database, a trigger on ``posts`` that fires when the
worker sets a post's ``enriched_version`` and calls ``pg_notify`` with the post id and
``clock_timestamp()`` (the moment of the UPDATE, inside the worker's transaction). PostgreSQL
delivers a notification only after the transaction that sent it has committed, so the time
this process receives it is after the worker's commit: that is the pipeline's "handled" time
(the trigger's own time, before the commit, is kept as a lower bound).

Run as ``python -m bench.observer OUT_FILE`` with ``HERALD_DB_DSN`` set. It writes
``ready`` once listening, then one line per notification — ``post_id trigger_epoch
received_epoch`` — flushed every 50 ms, until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

CHANNEL = "bench_handled"
TRIGGER = f"""
CREATE OR REPLACE FUNCTION bench_notify_enriched() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.id::text || ' ' || extract(epoch FROM clock_timestamp()));
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER bench_enriched AFTER UPDATE OF enriched_version ON posts FOR EACH ROW
  WHEN (NEW.enriched_version IS DISTINCT FROM OLD.enriched_version)
  EXECUTE FUNCTION bench_notify_enriched();
"""


async def observe(out_path: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lines: list[str] = []

    def received(_: Any, __: int, ___: str, payload: object) -> None:
        lines.append(f"{payload} {time.time():.6f}\n")

    conn = await asyncpg.connect(os.environ["HERALD_DB_DSN"])
    with open(out_path, "a", encoding="ascii") as out:  # noqa: ASYNC230 - small local writes
        try:
            await conn.add_listener(CHANNEL, received)
            out.write("ready\n")
            out.flush()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
                if lines:
                    out.writelines(lines)
                    lines.clear()
                    out.flush()
        finally:
            out.writelines(lines)
            await conn.close()


class ObservedLog:
    """The observer's output, read incrementally: each ``refresh`` parses only the lines
    written since the last one (the harness polls it while the pipeline drains)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, list[tuple[float, float]]] = {}
        self._offset = 0

    def refresh(self) -> dict[str, list[tuple[float, float]]]:
        """Per post id: every (trigger time, receipt time) seen so far (epoch seconds)."""
        try:
            with self.path.open("rb") as out:
                out.seek(self._offset)
                chunk = out.read()
        except FileNotFoundError:
            return self.seen
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        for line in complete.decode("ascii").splitlines():
            parts = line.split()
            if len(parts) == 3:
                self.seen.setdefault(parts[0], []).append((float(parts[1]), float(parts[2])))
        return self.seen


def is_ready(path: Path) -> bool:
    try:
        with path.open(encoding="ascii") as lines:
            return lines.readline().strip() == "ready"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    uvloop.run(observe(sys.argv[1]))
