"""Entity tags and conditional requests (RFC 9110 §8.8.3, §13): ETag, If-Match, If-None-Match."""

from __future__ import annotations

import re

from herald_api.http.problems import Problem

# An entity tag of ours never holds a comma: a list splits on them.
_ENTITY_TAG = r'(W/)?"([\x21\x23-\x2b\x2d-\x7e]*)"'
_ENTITY_TAG_RE = re.compile(r"[ \t]*" + _ENTITY_TAG + r"[ \t]*")
#: What If-Match and If-None-Match may hold: ``*`` or a list of entity tags, possibly empty
#: (RFC 9110: ``"*" / #entity-tag``); the OpenAPI document's pattern, checked here as written.
ENTITY_TAGS_PATTERN = rf"^(\*|({_ENTITY_TAG}([ \t]*,[ \t]*{_ENTITY_TAG})*)?)$"
_ENTITY_TAGS_RE = re.compile(ENTITY_TAGS_PATTERN)


def etag_for(version: int, enriched: bool = False) -> str:
    """The post's entity tag: its version, marked once the worker has enriched that version."""
    return f'"{version}-e"' if enriched else f'"{version}"'


def _parse(header: str) -> list[tuple[bool, str]]:
    """The (weak, opaque tag) pairs of a list header; raises Problem 400 when malformed."""
    if _ENTITY_TAGS_RE.fullmatch(header.strip(" \t")) is None:
        raise Problem(400, "The entity-tag list is malformed.", type_="malformed-header")
    if not header.strip(" \t"):
        return []  # an empty list: no tag matches
    tags = []
    for part in header.split(","):
        match = _ENTITY_TAG_RE.fullmatch(part)
        if match is None:
            raise Problem(400, "The entity-tag list is malformed.", type_="malformed-header")
        tags.append((match.group(1) is not None, f'"{match.group(2)}"'))
    return tags


def if_match_fails(header: str | None, version: int) -> bool:
    """True when an If-Match header is present and no strong tag in it names ``version``.

    The precondition is on the post's version: a tag from before or after the worker enriched
    that version matches alike, since enrichment changes no field a client writes.
    """
    if header is None or header.strip(" \t") == "*":
        return False
    current = {etag_for(version), etag_for(version, enriched=True)}
    return not any(not weak and tag in current for weak, tag in _parse(header))


def if_none_match_hits(header: str | None, current_etag: str) -> bool:
    """True when If-None-Match names the current representation (weak comparison)."""
    if header is None:
        return False
    if header.strip(" \t") == "*":
        return True
    return any(tag == current_etag for _, tag in _parse(header))
