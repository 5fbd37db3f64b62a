"""The committed AsyncAPI document is valid for the AsyncAPI Initiative's own parser
(``@asyncapi/parser`` from the npm registry, pinned in ``tools/asyncapi/package-lock.json`` and
installed by ``make tools``): zero errors and zero warnings. A broken copy must fail, or the
check proves nothing."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from herald_shared.asyncapi import DOCUMENT_PATH

TOOL_DIR = Path(__file__).resolve().parents[2] / "tools" / "asyncapi"
VALIDATE = TOOL_DIR / "validate.mjs"


def validate(*documents: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node, "node is missing: make tools installs it (deploy/local/ensure-tools.sh)"
    assert (TOOL_DIR / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "@asyncapi/parser is not installed: make tools runs npm ci in tools/asyncapi"
    )
    result = subprocess.run(
        [node, str(VALIDATE), *map(str, documents)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=TOOL_DIR,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(reports) == len(documents), result.stdout + result.stderr
    return result.returncode, reports


def test_the_committed_document_has_no_errors_and_no_warnings() -> None:
    returncode, [report] = validate(DOCUMENT_PATH)
    assert report["parsed"], report
    assert report["errors"] == [], report["errors"]
    assert report["warnings"] == [], report["warnings"]
    assert returncode == 0


def _broken(document: dict[str, Any], how: str) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    first_operation = next(iter(broken["operations"].values()))
    first_channel = next(iter(broken["channels"].values()))
    if how == "action":
        first_operation["action"] = "publish"  # AsyncAPI 2's word, not 3's
    elif how == "reference":
        first_operation["messages"][0]["$ref"] = "#/components/messages/missing"
    elif how == "binding":
        first_channel["bindings"]["amqp"]["exchange"]["type"] = "fan"
    elif how == "version":
        broken["asyncapi"] = "3.0"
    return broken


BREAKAGES = ("action", "reference", "binding", "version")


def test_every_broken_copy_fails_validation(tmp_path: Path) -> None:
    document = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    paths = []
    for how in BREAKAGES:
        path = tmp_path / f"broken-{how}.json"
        path.write_text(json.dumps(_broken(document, how)), encoding="utf-8")
        paths.append(path)
    # One parser process for all the copies: its start-up is most of the cost.
    returncode, reports = validate(*paths)
    assert returncode == 1
    failed = {Path(report["file"]).stem for report in reports if report["errors"]}
    assert failed == {f"broken-{how}" for how in BREAKAGES}, reports


def test_the_lockfile_names_no_package_host() -> None:
    lock = (TOOL_DIR / "package-lock.json").read_text(encoding="utf-8")
    assert '"resolved"' not in lock
    assert "://" not in lock
    assert "omit-lockfile-registry-resolved=true" in (TOOL_DIR / ".npmrc").read_text()
