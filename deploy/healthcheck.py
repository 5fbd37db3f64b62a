"""The image's HEALTHCHECK: exit 0 when the service in this container answers /readyz with 200.

Which port to ask follows the service the container runs (``HERALD_SERVICE``) and the same
settings the service reads: the API's ``HERALD_API_PORT`` (8000), the consumers'
``HERALD_CONSUMER_HEALTH_PORT`` (worker 9101, cache-invalidator 9102). Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"api": 8000, "worker": 9101, "cache-invalidator": 9102}


def readiness_url(environ: dict[str, str]) -> str:
    service = environ.get("HERALD_SERVICE", "api")
    variable = "HERALD_API_PORT" if service == "api" else "HERALD_CONSUMER_HEALTH_PORT"
    port = environ.get(variable) or str(DEFAULT_PORTS[service])
    return f"http://127.0.0.1:{port}/readyz"


def main() -> int:
    url = readiness_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
