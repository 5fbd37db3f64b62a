"""Running a container of the manifests as the kubelet would, on this machine.

A ``Pod`` is one container's command with exactly the environment the manifests give it, run
in a private mount namespace (``unshare --mount``) where the code tree is read-only, each
emptyDir the container mounts is a fresh directory of the test's own, and the process runs as
the manifests' unprivileged user (``setpriv``). Cluster addresses are rewritten to this
machine's servers by a table, and the services' names (database, broker namespace, Redis key
prefix) are the test run's own. Shaping mounts and switching user needs root, which ``make
test`` has on the machines it runs on (CI included).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.rendered import ROOT

#: The manifests' user (runAsUser / runAsGroup).
POD_USER = 10001
#: Where the image puts its programs first on PATH; here, the development environment's.
BIN = Path(sys.executable).parent
#: The interpreter the development environment was made from (the image's base Python).
BASE_PYTHON: str = getattr(sys, "_base_executable", sys.executable)


def rewrite(value: str, addresses: Mapping[str, str]) -> str:
    """``value`` with each cluster ``host:port`` replaced by this machine's."""
    for cluster, local in addresses.items():
        value = re.sub(rf"(?<=[/@]){re.escape(cluster)}(?=[/?]|$)", local, value)
    return value


def with_database(dsn: str, database: str) -> str:
    """``dsn`` naming ``database`` instead of its own."""
    head, _, _ = dsn.rpartition("/")
    return f"{head}/{database}"


def _untraversable_ancestor(path: Path) -> tuple[Path, str] | None:
    """The highest directory above ``path`` that others may not enter, and its child on the way."""
    parts = path.parts
    for depth in range(1, len(parts) - 1):
        directory = Path(*parts[: depth + 1])
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return directory, parts[depth + 1]
    return None


def _mount_script(
    read_only: list[Path], empty_dirs: Mapping[str, Path], holding: Path
) -> list[str]:
    """Shell commands that shape the private mount namespace."""
    commands: list[str] = []
    # A directory the pod user may not enter above a path it needs (like /root, mode 700, above
    # this machine's interpreter): lay an enterable tmpfs over it holding only those children.
    blocked: dict[Path, set[str]] = {}
    for path in read_only:
        found = _untraversable_ancestor(path)
        if found is not None:
            blocked.setdefault(found[0], set()).add(found[1])
    for index, (directory, children) in enumerate(sorted(blocked.items())):
        held = [(holding / f"{index}-{n}", directory / child) for n, child in enumerate(children)]
        for hold, original in held:
            hold.mkdir()
            commands.append(f"mount --bind {shlex.quote(str(original))} {hold}")
        commands.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(directory))}")
        for hold, original in held:
            commands += [
                f"mkdir {shlex.quote(str(original))}",
                f"mount --bind {hold} {shlex.quote(str(original))}",
            ]
    for path in read_only:
        quoted = shlex.quote(str(path))
        commands += [f"mount --bind {quoted} {quoted}", f"mount -o remount,bind,ro {quoted}"]
    for mount_path in sorted(empty_dirs, key=lambda p: Path(p).parts):
        quoted = shlex.quote(mount_path)
        commands += [f"mkdir -p {quoted}", f"mount --bind {empty_dirs[mount_path]} {quoted}"]
    return commands


@dataclass(frozen=True)
class Pod:
    """One container to run: its command, its environment, its emptyDir mount paths."""

    command: list[str]
    env: dict[str, str]
    empty_dirs: list[str]

    def start(self, scratch: Path, log: Path) -> subprocess.Popen[bytes]:
        """Start the container's process; each emptyDir is a new directory under ``scratch``."""
        volumes: dict[str, Path] = {}
        for index, mount_path in enumerate(self.empty_dirs):
            volume = scratch / f"volume-{index}"
            volume.mkdir()
            os.chown(volume, POD_USER, POD_USER)
            volumes[mount_path] = volume
        holding = scratch / "holding"
        holding.mkdir()
        interpreter = Path(os.path.realpath(BASE_PYTHON)).parent.parent
        script = _mount_script([ROOT, interpreter], volumes, holding)
        drop = (
            f"setpriv --reuid={POD_USER} --regid={POD_USER} --clear-groups --no-new-privs "
            "--inh-caps=-all --bounding-set=-all --"
        )
        # Enter the working directory again: the one inherited lies under the read-only mount.
        script += [f"cd {shlex.quote(str(ROOT))}", f"exec {drop} {shlex.join(self.command)}"]
        env = {
            **self.env,
            # The image's environment (deploy/Dockerfile), with this machine's programs.
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/",
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("wb") as output:
            return subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "/bin/sh",
                    "-ec",
                    "\n".join(script),
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def volume(self, scratch: Path, mount_path: str) -> Path:
        return scratch / f"volume-{self.empty_dirs.index(mount_path)}"
