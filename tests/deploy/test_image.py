"""The image's runtime environment, built as deploy/Dockerfile builds it, into a scratch
directory: the runtime lock's packages and the members' wheels (no editable install, no
development tool), every Herald module importable, and its size as docs/operations.md states.

There is no container engine here, so the test runs the Dockerfile's own commands, and checks
that the Dockerfile still says them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.pods import BASE_PYTHON
from tests.deploy.rendered import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
MEMBERS = ["shared", "services/api", "services/worker", "services/cache-invalidator", "cli"]
PACKAGES = [
    *("herald_shared", "herald_api", "herald_worker", "herald_cache_invalidator", "herald_cli")
]
COMMANDS = ["herald", "herald-api", "herald-worker", "herald-cache-invalidator"]
DEVELOPMENT_ONLY = [
    *("pytest", "mypy", "ruff", "hypothesis", "celery", "matplotlib", "py-spy", "uv"),
    *("pip", "setuptools"),  # the build tools stay in the build stage and the base image
]
#: The Dockerfile's install commands, as this test runs them (paths relative to the stage).
BUILD_STEPS = [
    "pip install --require-hashes -r requirements-build.lock",
    "pip wheel --no-deps --no-build-isolation --wheel-dir /wheels "
    "./shared ./services/api ./services/worker ./services/cache-invalidator ./cli",
]
RUNTIME_STEPS = [
    "python -m venv --without-pip /app/.venv",
    "python -m pip --python /app/.venv/bin/python install --require-hashes "
    "-r requirements-runtime.lock",
    "python -m pip --python /app/.venv/bin/python install --no-deps --no-index /wheels/*.whl",
]


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def venv(path: Path) -> Path:
    run([BASE_PYTHON, "-m", "venv", str(path)], cwd=path.parent)
    return path / "bin"


def size_of(directory: Path) -> int:
    return sum(
        (Path(root) / name).lstat().st_size
        for root, _, names in os.walk(directory)
        for name in names
    )


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The runtime stage's /app/.venv, built by the Dockerfile's commands."""
    work = tmp_path_factory.mktemp("image")
    # The build stage: its own copy of the sources (COPY), its own build backend.
    source = work / "src"
    for member in MEMBERS:
        shutil.copytree(
            ROOT / member, source / member, ignore=shutil.ignore_patterns("*.egg-info", "build")
        )
    shutil.copy(ROOT / "requirements-build.lock", source)
    build = venv(work / "build")
    wheels = work / "wheels"
    for step in BUILD_STEPS:
        command = step.replace("/wheels", str(wheels)).split()
        run([str(build / command[0]), *command[1:]], cwd=source)
    # The runtime stage: "python" is the base image's interpreter, with its own pip.
    app = work / "app"
    app.mkdir()
    shutil.copy(ROOT / "requirements-runtime.lock", app)
    for step in RUNTIME_STEPS:
        command = step.replace("/app/.venv", str(app / ".venv")).split()
        if command[-1] == "/wheels/*.whl":
            command[-1:] = map(str, sorted(wheels.glob("*.whl")))
        run([BASE_PYTHON, *command[1:]], cwd=app)
    yield app / ".venv"
    shutil.rmtree(work)


def test_the_dockerfile_runs_these_commands() -> None:
    text = re.sub(r"\s*\\\n\s*", " ", DOCKERFILE.read_text())
    stages = text.split("\nFROM ")
    assert len(stages) == 3, "a build stage and a runtime stage"
    build_stage, runtime_stage = stages[1], stages[2]
    for step in BUILD_STEPS:
        assert step in build_stage, step
    for step in RUNTIME_STEPS:
        assert step in runtime_stage, step
    assert "requirements-dev.lock" not in text
    assert not re.search(r"pip install[^\n]* -e ", text), "editable installs"
    assert re.search(r"^USER 10001:10001$", runtime_stage, re.M)
    assert re.search(r"^EXPOSE 8000 9100 9101 9102$", runtime_stage, re.M)
    assert re.search(r"^HEALTHCHECK .*CMD \[\"python\", \"/app/healthcheck.py\"\]$", text, re.M)


def test_the_runtime_holds_herald_and_its_runtime_dependencies_only(runtime: Path) -> None:
    pip = [BASE_PYTHON, "-m", "pip", "--python", str(runtime / "bin" / "python")]
    installed = {
        entry["name"].lower(): entry
        for entry in json.loads(run([*pip, "list", "--format=json"], runtime))
    }
    for package in DEVELOPMENT_ONLY:
        assert package not in installed, f"{package} is a development tool"
    run([*pip, "check"], runtime)
    site = runtime / "lib" / "python3.11" / "site-packages"
    direct_urls = list(site.glob("herald_*.dist-info/direct_url.json"))
    assert all('"editable": true' not in path.read_text() for path in direct_urls)
    assert not list(site.glob("__editable__*"))
    for command in COMMANDS:
        assert (runtime / "bin" / command).exists(), command


def test_every_herald_module_imports_from_the_runtime(runtime: Path) -> None:
    script = (
        "import importlib, pkgutil\n"
        f"for name in {PACKAGES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    for module in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        if not module.name.endswith('.__main__') and '.migrations.' not in module.name:\n"
        "            importlib.import_module(module.name)\n"
        "print(package.__file__)\n"
    )
    location = run([str(runtime / "bin" / "python"), "-c", script], cwd=runtime)
    assert str(runtime) in location, "imported from the source tree, not the runtime"


def test_the_documented_size_is_the_measured_one(runtime: Path) -> None:
    measured = size_of(runtime) / 1e6
    found = re.search(r"runtime environment[^\n]*?\*\*(\d+) MB\*\*", OPERATIONS.read_text())
    assert found, "docs/operations.md states the runtime environment's size as **N MB**"
    documented = int(found.group(1))
    assert abs(measured - documented) <= 0.05 * documented, (
        f"the runtime environment is {measured:.0f} MB; docs/operations.md says {documented} MB"
    )
