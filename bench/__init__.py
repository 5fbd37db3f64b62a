"""Herald's benchmark harness (``make bench``, ``python -m bench``).

Measures every hot path side by side with bare baselines and with Celery, on this machine only
(loopback), and writes a terminal table, ``bench/results/latest.json``, ``docs/benchmarks.md``
and plots under ``docs/benchmarks/``. See ``bench/__main__.py`` for the phases.
"""
