"""The Idempotency-Key rule, checked by the API on every submit and by the SDK before it
sends one."""

from __future__ import annotations

import re
from typing import Final

HEADER: Final = "Idempotency-Key"
# RFC 9110 field values are visible ASCII; 255 matches what hosted APIs accept. No space at
# either end: HTTP strips them (and httpx refuses to send them).
PATTERN: Final = r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"
_KEY: Final = re.compile(PATTERN)
RULE: Final = (
    "must be 1 to 255 visible ASCII characters, spaces only between them (a UUID is a good key)"
)
# How long a key names its first request (per API key).
KEPT_SECONDS: Final = 24 * 3600.0


def is_valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None
