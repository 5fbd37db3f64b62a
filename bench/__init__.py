"""Herald's benchmark harness (``make bench``, ``python -m bench``).

Measures every hot path side by side with bare baselines and with the peer stacks a team would
build instead (FastAPI + SQLAlchemy + slowapi + fastapi-cache2; Celery, Dramatiq, FastStream),
on this machine only (loopback), and writes a terminal table, ``bench/results/latest.json``,
``docs/benchmarks.md`` and plots under ``docs/benchmarks/``. See ``bench/__main__.py`` for the
phases.
"""
