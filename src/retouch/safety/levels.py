"""What each safety_tolerance level blocks: the one table prompts and images are judged by.

safety_tolerance runs from 1 (strictest) to 6 (most permissive); 4 is the default. A prompt
finding has a category and a severity; it is blocked when its severity reaches the level's
minimum for that category. An image is blocked when its NSFW score reaches the level's
threshold. Sexual content involving minors is blocked at every level.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final


class Category(StrEnum):
    SEXUAL = "sexual"
    MINORS = "minors"
    """Sexual content involving minors: blocked at every level, whatever the severity."""
    VIOLENCE = "violence"
    """Violence and gore."""
    HATE = "hate"
    SELF_HARM = "self_harm"
    ILLEGAL = "illegal"
    """Illegal activity: weapons, drugs, trafficking, terrorism."""


class Severity(IntEnum):
    MILD = 1
    """Suggestive or mild: swimwear, a fistfight, a slur quoted in passing."""
    EXPLICIT = 2
    """Explicit or graphic: nudity and sex acts, gore, a direct attack on a group."""
    EXTREME = 3
    """Extreme: sexual violence, torture, mutilation, incitement, instructions for harm."""


# Lowest severity blocked, per category, for safety_tolerance 1..6.
MIN_BLOCKED: Final[dict[Category, tuple[int, int, int, int, int, int]]] = {
    Category.MINORS: (1, 1, 1, 1, 1, 1),
    Category.SEXUAL: (1, 1, 2, 2, 3, 3),
    Category.VIOLENCE: (1, 2, 2, 3, 3, 3),
    Category.HATE: (1, 1, 2, 2, 3, 3),
    Category.SELF_HARM: (1, 1, 2, 2, 3, 3),
    Category.ILLEGAL: (1, 2, 2, 3, 3, 3),
}

# NSFW score (the classifier's P(nsfw), 0..1) at or above which an image is blocked, for
# safety_tolerance 1..6. The classifier's authors read < 0.2 as safe and > 0.8 as unsafe:
# level 1 blocks everything not clearly safe, the default 4 blocks what they call unsafe,
# and the permissive levels block only what the classifier is nearly certain of.
NSFW_THRESHOLDS: Final[tuple[float, float, float, float, float, float]] = (
    0.2,
    0.4,
    0.6,
    0.8,
    0.9,
    0.97,
)


def is_blocked(category: Category, severity: Severity, tolerance: int) -> bool:
    return int(severity) >= MIN_BLOCKED[category][_index(tolerance)]


def nsfw_threshold(tolerance: int) -> float:
    return NSFW_THRESHOLDS[_index(tolerance)]


def _index(tolerance: int) -> int:
    if not 1 <= tolerance <= 6:
        raise ValueError(f"safety_tolerance must be 1..6, got {tolerance}")
    return tolerance - 1
