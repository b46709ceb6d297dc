"""Image moderation speed: milliseconds to moderate images with the Open-NSFW classifier.

Prints the median over --runs (after a warm-up) for one 1024² image, a batch of four 1024²
images and one 2048² image, preprocessing included, split into preprocessing and inference,
and says which CPU and how many onnxruntime threads ran it. The budget (issue 4) is 50 ms
per 1K image.

    .venv/bin/python bench/safety_speed.py [--runs 20] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from retouch.safety.images import OpenNsfwClassifier, judge

BUDGET_MS = 50.0
# (label, side, images per call)
CASES = [("1024² x1", 1024, 1), ("1024² x4", 1024, 4), ("2048² x1", 2048, 1)]


def photo_like(side: int, seed: int) -> Image.Image:
    """A smooth gradient with grain: JPEG-encodes like a photo, unlike flat colour or noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    across, down = np.meshgrid(ramp, ramp)
    base = np.stack([(across + down) * 90, (1 + across - down) * 100, 200 - down * 120], axis=-1)
    grain = rng.normal(0.0, 12.0, (side, side, 3)).astype(np.float32)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))


def median_ms(action: Callable[[], object], runs: int) -> float:
    action()  # warm-up: first-call allocations and kernel selection
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    args = parser.parse_args()

    start = time.perf_counter()
    classifier = OpenNsfwClassifier.load(threads=args.threads)
    load_ms = (time.perf_counter() - start) * 1000
    print(f"CPU: {cpu_name()} ({len(os.sched_getaffinity(0))} usable cores)")
    print(f"onnxruntime intra-op threads: {classifier.threads}; session load {load_ms:.0f} ms")
    print(f"median of {args.runs} runs after a warm-up, ms:")
    print(f"{'case':<10} {'total':>8} {'per image':>10} {'preprocess':>11} {'inference':>10}")
    for label, side, count in CASES:
        images = [photo_like(side, seed) for seed in range(count)]
        total = median_ms(partial(judge, classifier, images, 4), args.runs)
        prepare = median_ms(partial(classifier.preprocess, images), args.runs)
        per_image = total / count
        verdict = ""
        if side == 1024:
            verdict = "within budget" if per_image <= BUDGET_MS else "OVER BUDGET"
        print(
            f"{label:<10} {total:>8.1f} {per_image:>10.1f} {prepare:>11.1f} "
            f"{total - prepare:>10.1f}  {verdict}"
        )
    from retouch.safety.prompt import moderate_prompt

    longest = ("make the sky purple and add a hat to the kid, 讓背景變成雨夜街道 " * 200)[:8000]
    prompt_ms = median_ms(lambda: moderate_prompt(longest, 4), args.runs)
    print(f"prompt moderation, 8000 characters (the longest allowed): {prompt_ms:.2f} ms per job")
    print(f"budget: {BUDGET_MS:.0f} ms per 1K image")


if __name__ == "__main__":
    main()
