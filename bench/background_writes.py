"""Writes alongside reads: an open-loop writer (``bench.openloop``) in a thread of the harness,
POSTing to the API at a steady rate while wrk reads, and its CPU (the thread's own)."""

from __future__ import annotations

import threading
import time

import uvloop

from bench.openloop import WriterResult, write_open_loop


class BackgroundWriter:
    """An open-loop writer (``bench.openloop``) in a thread of the harness, POSTing to the API
    at a steady rate while wrk reads; its CPU is the harness thread's."""

    active = True

    def __init__(self, port: int, token: str, rate: float, seconds: float, nonce: str) -> None:
        self._args = (port, token, rate, seconds, nonce)
        self.result: WriterResult | None = None
        self.cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        port, token, rate, seconds, nonce = self._args
        started = time.thread_time()
        self.result = uvloop.run(
            write_open_loop(port, token, rate=rate, seconds=seconds, connections=4, nonce=nonce)
        )
        self.cpu_seconds = time.thread_time() - started

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join()


class NoWrites:
    """The writer of a scenario that does not write."""

    active = False
    cpu_seconds = 0.0
    result: WriterResult | None = None

    def __enter__(self) -> NoWrites:
        return self

    def __exit__(self, *_: object) -> None:
        return None
