"""docs/security.md goes through the OWASP API Security Top 10 (2023) item by item, and every
test it names as proof exists: a renamed or deleted test makes this fail, so the document
cannot keep citing proof that is gone. The README links it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SECURITY = ROOT / "docs" / "security.md"

OWASP_2023 = [
    "Broken Object Level Authorization",
    "Broken Authentication",
    "Broken Object Property Level Authorization",
    "Unrestricted Resource Consumption",
    "Broken Function Level Authorization",
    "Unrestricted Access to Sensitive Business Flows",
    "Server Side Request Forgery",
    "Security Misconfiguration",
    "Improper Inventory Management",
    "Unsafe Consumption of APIs",
]
_SECTION = re.compile(r"^## API(\d+):2023 — (.+)$", re.MULTILINE)
_TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)+)`")


def sections() -> dict[int, tuple[str, str]]:
    text = SECURITY.read_text(encoding="utf-8")
    found = list(_SECTION.finditer(text))
    bodies = {}
    for match, following in zip(found, [*found[1:], None], strict=True):
        end = following.start() if following else len(text)
        bodies[int(match[1])] = (match[2].strip(), text[match.end() : end])
    return bodies


def test_every_item_of_the_2023_list_has_its_section_in_order() -> None:
    found = sections()
    assert list(found) == list(range(1, 11))
    assert [title for title, _ in found.values()] == OWASP_2023


def test_every_item_names_tests_and_every_named_test_exists() -> None:
    missing = []
    for number, (_title, body) in sections().items():
        references = _TEST_REFERENCE.findall(body)
        assert references, f"API{number} names no test"
        for path, names in references:
            source = ROOT / path
            if not source.is_file():
                missing.append(path)
                continue
            text = source.read_text(encoding="utf-8")
            for name in names.strip(":").split("::"):
                if not re.search(rf"^\s*(?:async def|def|class) {name}\b", text, re.MULTILINE):
                    missing.append(f"{path}::{name}")
    assert not missing, missing


def test_the_readme_links_it() -> None:
    assert "(docs/security.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
