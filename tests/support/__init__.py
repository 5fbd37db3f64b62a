"""What tests share, one module per kind of thing:

- ``apps``: the API in-process (``running_api``, ``in_process_client``);
- ``broker``: the run's broker namespace (``Broker``: publish, inspect, drain; cleanup);
- ``cache`` and ``databases``: the run's Redis prefix and PostgreSQL database;
- ``cli``: the ``herald`` command, as a process or in-process;
- ``clock``: a fake clock for time-dependent logic;
- ``consumer_app``: a real consumer process with a recording handler;
- ``http``: creating posts, reading versions, checking problem bodies;
- ``measurements``: figures reported in the terminal summary;
- ``metrics``: a real process's Prometheus metrics, scraped;
- ``network``: free ports, DSNs pointing at them;
- ``processes`` and ``services``: real processes, and the Herald services started as them;
- ``faults``: a TCP proxy that cuts, blackholes, delays or holds back a server's traffic;
- ``waiting``: waiting on a condition with a deadline;
- ``webhook_receiver``: local HTTP endpoints that verify and record webhook deliveries.
"""
