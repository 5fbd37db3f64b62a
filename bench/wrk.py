"""Running wrk: closed-loop HTTP load on loopback with a fixed number of connections, one
scenario script (``bench/lua/``) plus the common report, parsed into a ``WrkResult``."""

from __future__ import annotations

import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).with_name("lua")


@dataclass(frozen=True, slots=True)
class WrkSettings:
    threads: int = 2
    connections: int = 32
    timeout_seconds: int = 5


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    status_errors: int
    socket_errors: int
    #: CPU seconds wrk itself used (it shares the machine with the server).
    wrk_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    return path


def script_for(name: str, work: Path) -> Path:
    """The scenario script with the common report appended, written into the work folder."""
    target = work / f"{name}.lua"
    if not target.exists():
        text = (LUA_DIR / f"{name}.lua").read_text() + "\n" + (LUA_DIR / "report.lua").read_text()
        target.write_text(text)
    return target


def _parse(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}


def run_wrk(
    url: str,
    script: Path,
    args: list[str],
    *,
    seconds: float,
    settings: WrkSettings,
) -> WrkResult:
    """Run wrk for ``seconds`` (whole seconds, at least 1) against ``url`` (loopback only)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load goes to loopback only, not {url}")
    duration = max(1, round(seconds))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(  # noqa: S603 - our own arguments, no shell
        [
            require_wrk(),
            f"-t{settings.threads}",
            f"-c{settings.connections}",
            f"-d{duration}s",
            f"--timeout={settings.timeout_seconds}s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
        start_new_session=True,  # its own process group, like every process the harness starts
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in completed.stdout.splitlines() if ln.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    r = _parse(lines[-1])
    return WrkResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50"] / 1000,
        p90_ms=r["p90"] / 1000,
        p99_ms=r["p99"] / 1000,
        p999_ms=r["p999"] / 1000,
        max_ms=r["max"] / 1000,
        status_errors=r["status_errors"],
        socket_errors=r["connect_errors"] + r["io_errors"] + r["timeouts"],
        wrk_cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
