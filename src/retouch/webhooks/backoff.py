"""When a failed webhook is tried again: growing pauses with jitter, or when the receiver asks."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetrySchedule:
    """`first` seconds after the first failure, then `factor` times longer each time, never
    more than `maximum`. Each pause is shortened by up to `jitter` (a fraction) at random, so
    deliveries that failed together (a receiver's outage) do not all return together."""

    first: float
    factor: float
    maximum: float
    jitter: float = 0.2

    def delay(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """The pause after `failures` failed attempts in a row (1 = after the first)."""
        pause = min(self.first, self.maximum)
        # A loop, not factor ** n: the power overflows a float after a few hundred failures.
        for _ in range(failures - 1):
            if pause >= self.maximum:
                break
            pause = min(pause * self.factor, self.maximum)
        return pause * (1 - self.jitter * draw())


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a receiver asked us to wait (Retry-After: seconds or an HTTP date), if any."""
    value = headers.get("retry-after", "").strip()
    # ASCII digits only: str.isdigit() accepts "²", which int() and float() refuse.
    if re.fullmatch(r"[0-9]{1,12}", value):
        return float(value)
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
