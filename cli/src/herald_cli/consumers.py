"""The consuming services the operator commands know by name (the CLI imports no service).

Each name is a service's consumer name and the middle of its queues' names
(``<namespace>.<name>``, ``….dlq``, ``….retry.<ms>ms``).
"""

from __future__ import annotations

KNOWN_CONSUMERS: tuple[str, ...] = ("worker", "cache-invalidator")
