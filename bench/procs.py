"""Processes the harness starts: each in a process group (session) of its own, stopped by
signalling the whole group, and checked for leftovers; plus CPU accounting from ``/proc``.

Every group ever started is remembered in ``Groups``; ``stop_all`` (run on every exit path of
the harness) stops whatever is still running and reports any process that survived.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # fields[0] is the state, fields[2] the process group.
        if fields is not None and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (to read their CPU time, nothing else)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def listening_pids(name: str, port: int) -> list[int]:
    """The processes called ``name`` that listen on TCP ``port`` — the shared server, not a
    private instance someone else started for a test; all called ``name`` when none is found."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # fields[1] local address:port (hex), fields[3] state (0A listening), [9] inode
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    candidates = pids_named(name)
    owners = []
    for pid in candidates:
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fd) in inodes for fd in fds.iterdir()):
                owners.append(pid)
    return owners or candidates


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds so far of each of ``pids`` that is still there."""
    found = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two ``cpu_by_pid`` readings by the processes in both (one that
    ended or started in between — a restarted server — is left out rather than miscounted)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def shared_server_pids() -> dict[str, list[int]]:
    """The shared RabbitMQ and Redis servers' processes (their CPU counts other people's work
    too); PostgreSQL backends are found per database by the caller."""
    return {
        "rabbitmq": listening_pids("beam.smp", 5672),
        "redis": listening_pids("redis-server", 6379),
    }


@dataclass(slots=True)
class CpuMeter:
    """CPU time of named sets of processes — process groups, server processes, this process —
    and of the whole machine, read twice and turned into cores (CPU seconds per second)."""

    groups: list[Group]
    servers: dict[str, list[int]]
    #: The name this process (the harness, e.g. a load generator running in it) is shown as.
    own_name: str = "harness"

    def read(self) -> dict[str, dict[int, float]]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, _ = machine_busy()
        reading = {g.name: cpu_by_pid(g.members()) for g in self.groups}
        reading |= {name: cpu_by_pid(pids) for name, pids in self.servers.items()}
        reading[self.own_name] = {os.getpid(): usage.ru_utime + usage.ru_stime}
        reading["machine"] = {0: busy / CLOCK_TICKS}
        return reading

    @staticmethod
    def cores(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
    ) -> dict[str, float]:
        return {
            name: round(cpu_between(before[name], after.get(name, {})) / max(seconds, 1e-9), 3)
            for name in before
        }


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (processes that are gone count 0)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from ``/proc/stat``."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    busy = values[0] + values[1] + values[2]  # user, nice, system
    return busy, sum(values)


def stolen_ticks() -> int:
    """Clock ticks the hypervisor gave to other machines so far (``steal`` in ``/proc/stat``)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return int(first[7]) if len(first) > 7 else 0


def busy_share(seconds: float = 0.5) -> float:
    """The share (0..1) of all CPUs busy over the next ``seconds``."""
    b0, t0 = machine_busy()
    time.sleep(seconds)
    b1, t1 = machine_busy()
    return (b1 - b0) / max(t1 - t0, 1)


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the machine uses under ``threshold`` of its CPUs.

    Returns the last share seen; measuring goes ahead when the wait runs out (and the share
    other processes used during each run is recorded with it).
    """
    deadline = time.monotonic() + max_wait
    share = busy_share()
    while share >= threshold and time.monotonic() < deadline:
        share = busy_share()
    return share


@dataclass(slots=True)
class Group:
    """One started command: the leader of its own session and process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.process.pid

    def members(self) -> list[int]:
        return group_members(self.pgid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.members())

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def stop(self, grace: float = 15.0) -> list[int]:
        """SIGTERM the group, SIGKILL it after ``grace`` s; returns processes that survived."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.process.poll()
            if not self.members():
                break
            time.sleep(0.05)
        else:
            self.signal(signal.SIGKILL)
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        return self.members()


@dataclass(slots=True)
class Groups:
    """Starts commands in their own process groups and stops every one of them at the end."""

    log_dir: Path
    started: list[Group] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Group:
        log_path = self.log_dir / f"{len(self.started):02d}-{name}.log"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(  # noqa: S603 - our own commands, no shell
                list(args),
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        group = Group(name, process, log_path)
        self.started.append(group)
        return group

    def stop(self, group: Group) -> None:
        left = group.stop()
        if left:
            self.survivors.append(f"{group.name}: pids {left} survived SIGKILL")

    def stop_all(self) -> list[str]:
        """Stop every group still running; returns what could not be stopped (should be [])."""
        for group in self.started:
            if group.members():
                self.stop(group)
        leftovers = [f"{g.name}: pids {g.members()}" for g in self.started if g.members()]
        return self.survivors + leftovers
