"""Schema-driven fuzzing: schemathesis, with every check it has, over every operation of the
real API's own ``/openapi.json`` — its examples, its coverage of each constraint's edges, random
valid and invalid requests, and stateful sequences along the document's links (create, then
read, update, delete) — finds nothing.

The API runs as a real server process, on a database of its own (``conftest.py``), with a valid
key whose budgets are lifted; the run is
deterministic with a fixed example budget (``schemathesis.toml`` beside this file, which also
holds the few exceptions a documented behaviour needs, each with its reason).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.contracts.conftest import StartContractApi

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
RUN_SECONDS = 480
LIFTED = "1000000000"


@pytest.mark.slow
@pytest.mark.timeout(RUN_SECONDS + 60)
async def test_schemathesis_with_all_checks_finds_no_failure(
    start_contract_api: StartContractApi, tmp_path: Path
) -> None:
    api = await start_contract_api(
        "fuzz",
        {
            "HERALD_RATE_LIMIT_READ_PER_WINDOW": LIFTED,
            "HERALD_RATE_LIMIT_WRITE_PER_WINDOW": LIFTED,
            # The checks of authentication send requests without the key.
            "HERALD_RATE_LIMIT_ANONYMOUS_PER_WINDOW": LIFTED,
        },
    )
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        document = (await http.get("/openapi.json")).json()
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{api.base_url}/openapi.json",
        "--checks",
        "all",
        "--workers",
        "1",
        "--no-color",
    ]
    finished = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=tmp_path,
        env={**os.environ, "HERALD_FUZZ_API_KEY": api.token},
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )
    report = finished.stdout + finished.stderr
    assert finished.returncode == 0, report[-20_000:]
    operations = sum(len(item) for item in document["paths"].values())
    assert f"{operations} selected / {operations} total" in report, report[-5_000:]
    summary = report[report.rindex("Test Phases:") :]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
