"""safety_tolerance applied to a job: the prompt and every input before the model runs, every
output before it is stored. Offline: a prompt lexicon and an NSFW image classifier."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from retouch.safety.images import ImageClassifier, ImageVerdict, judge
from retouch.safety.levels import Category
from retouch.safety.prompt import PromptFinding, moderate_prompt

POLICY_VIOLATION = "content_policy_violation"

_CATEGORY_NAMES = {
    Category.SEXUAL: "sexual content",
    Category.MINORS: "sexual content involving minors",
    Category.VIOLENCE: "violence or gore",
    Category.HATE: "hate",
    Category.SELF_HARM: "self-harm",
    Category.ILLEGAL: "illegal activity",
}


class PolicyViolation(Exception):
    """A prompt or input was refused; the message names the stage and the category."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _advice(category: Category, tolerance: int) -> str:
    if category is Category.MINORS:
        return "this is refused at every safety_tolerance."
    if tolerance < 6:
        return "rephrase it, or send a higher safety_tolerance if your use allows it."
    return "rephrase it."


def prompt_message(finding: PromptFinding, tolerance: int) -> str:
    return (
        f"prompt: flagged for {_CATEGORY_NAMES[finding.category]} "
        f"({finding.severity.name.lower()}) at safety_tolerance {tolerance}; "
        + _advice(finding.category, tolerance)
    )


def image_message(stage: str, verdict: ImageVerdict, tolerance: int) -> str:
    return (
        f"{stage}: flagged as sexual content (NSFW score {verdict.score:.2f}, the limit at "
        f"safety_tolerance {tolerance} is {verdict.threshold:.2f}); "
        + _advice(Category.SEXUAL, tolerance)
    )


@dataclass(frozen=True)
class Moderator:
    classifier: ImageClassifier

    def check_prompt(self, prompt: str, tolerance: int) -> None:
        finding = moderate_prompt(prompt, tolerance)
        if finding is not None:
            raise PolicyViolation(prompt_message(finding, tolerance))

    def check_inputs(self, images: list[Image.Image], tolerance: int) -> None:
        for index, verdict in enumerate(judge(self.classifier, images, tolerance)):
            if verdict.blocked:
                raise PolicyViolation(image_message(f"image_urls[{index}]", verdict, tolerance))

    def judge_outputs(self, images: list[Image.Image], tolerance: int) -> list[ImageVerdict]:
        return judge(self.classifier, images, tolerance)
