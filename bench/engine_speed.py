"""Engine speed: seconds per image for FLUX.2 [klein] 4B, eager against compiled.

On a CUDA machine it builds the full-size klein 4B architecture (the real diffusers and
transformers classes with the published configs) with random weights, so nothing is
downloaded and the timings equal the real weights', and reports in one run: seconds per image
at 1K and 2K, plain diffusers eager against Retouch's engine eager and compiled,
num_images 1 against 4, and peak GPU memory. Without CUDA it runs the preview model on the
CPU and says so: those figures are not GPU figures.

    .venv/bin/python bench/engine_speed.py [--runs 3] [--attention-backend _native_cudnn]
        [--cases 1Kx1,1Kx4,2Kx1]

--cases restricts the sizes measured (and compiled: each case is a shape the compiled engine
warms up before it is timed), e.g. to keep a run inside a time limit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from retouch.engine.base import EditRequest, Engine
from retouch.engine.options import EngineOptions

PROMPT = "turn the sky into a sunset, keep everything else unchanged"
# (label, width, height, num_images)
CASES = [("1K x1", 1024, 1024, 1), ("1K x4", 1024, 1024, 4), ("2K x1", 2048, 2048, 1)]

# FLUX.2 [klein] 4B as published: transformer, Qwen3-4B text encoder, FLUX.2 VAE (defaults).
KLEIN_4B_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "guidance_embeds": False,
}
QWEN3_4B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
}


def build_full_size_klein(device: str) -> Any:
    """Flux2KleinPipeline of the full 4B architecture with random bf16 weights on `device`."""
    import importlib

    import torch

    from retouch.engine.preview_flux2_klein import build_tokenizer

    # diffusers is untyped and transformers half-typed: used as Any here, as in the engines.
    diffusers: Any = importlib.import_module("diffusers")
    transformers: Any = importlib.import_module("transformers")
    with torch.device(device):
        transformer = diffusers.Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER)
        text_encoder = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**QWEN3_4B))
        vae = diffusers.AutoencoderKLFlux2()
    return diffusers.Flux2KleinPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
        vae=vae.to(torch.bfloat16),
        text_encoder=text_encoder.to(torch.bfloat16),
        tokenizer=build_tokenizer(),
        transformer=transformer.to(torch.bfloat16),
        is_distilled=True,
    )


def time_runs(run: Callable[[], object], runs: int, synchronize: Callable[[], None]) -> float:
    """Median wall seconds of `runs` calls after one untimed warm-up call."""
    run()
    synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def edit_call(engine: Engine, width: int, height: int, count: int) -> Callable[[], object]:
    reference = Image.new("RGB", (1024, 1024), (90, 140, 200))
    request = EditRequest(
        prompt=PROMPT, images=[reference], width=width, height=height, seeds=list(range(count))
    )
    return lambda: engine.edit(request)


def plain_call(pipe: Any, width: int, height: int, count: int) -> Callable[[], object]:
    """The pipeline called as its documentation shows, for the eager baseline."""
    reference = Image.new("RGB", (1024, 1024), (90, 140, 200))
    return lambda: pipe(
        image=[reference],
        prompt=PROMPT,
        width=width,
        height=height,
        num_inference_steps=4,
        num_images_per_prompt=count,
    )


def case_key(label: str) -> str:
    """The form --cases takes: "1K x4" -> "1kx4"."""
    return label.replace(" ", "").lower()


def selected_cases(spec: str | None) -> list[tuple[str, int, int, int]]:
    if spec is None:
        return list(CASES)
    wanted = [case_key(part) for part in spec.split(",") if part.strip()]
    known = {case_key(case[0]): case for case in CASES}
    unknown = [key for key in wanted if key not in known]
    if unknown or not wanted:
        raise SystemExit(f"--cases: unknown {unknown or spec!r}; known: {', '.join(known)}")
    return [known[key] for key in wanted]


def run_cuda(args: argparse.Namespace) -> None:
    import torch

    from retouch.engine.flux2_klein import Flux2KleinEngine

    device = "cuda"
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print("model: FLUX.2 [klein] 4B architecture, random bf16 weights (timings as real weights)")
    rows: list[tuple[str, str, float, float]] = []

    def record(label: str, mode: str, call: Callable[[], object], count: int) -> None:
        torch.cuda.reset_peak_memory_stats()
        seconds = time_runs(call, args.runs, torch.cuda.synchronize)
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append((label, mode, seconds / count, peak))
        print(
            f"  {label:6} {mode:22} {seconds / count:7.3f} s/image   peak {peak:6.1f} GiB",
            flush=True,
        )

    cases = selected_cases(args.cases)
    pipe = build_full_size_klein(device)
    pipe.set_progress_bar_config(disable=True)
    for label, width, height, count in cases:
        record(label, "diffusers eager", plain_call(pipe, width, height, count), count)
    options = EngineOptions(device=device, attention_backend=args.attention_backend)
    eager = Flux2KleinEngine.from_pipeline(pipe, model="klein-4B-random", options=options)
    for label, width, height, count in cases:
        record(label, "retouch eager", edit_call(eager, width, height, count), count)
    compiled_options = EngineOptions(
        device=device, compile=True, attention_backend=args.attention_backend
    )
    started = time.perf_counter()
    compiled = Flux2KleinEngine.from_pipeline(
        pipe, model="klein-4B-random", options=compiled_options, warm_up=False
    )
    for _, width, height, count in cases:
        edit_call(compiled, width, height, count)()  # compiles this shape
    print(f"  compile + warm-up of the timed sizes: {time.perf_counter() - started:.0f} s")
    for label, width, height, count in cases:
        record(label, "retouch compiled", edit_call(compiled, width, height, count), count)
    summarise(rows)


def run_cpu(args: argparse.Namespace) -> None:
    from retouch.engine.registry import load_engine

    print("NO CUDA: this run uses the PREVIEW model (tiny random weights) on the CPU.")
    print("These are not GPU figures; they show the code path and the CPU's cost only.")
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as models:
        engine = load_engine("flux2-klein", None, models_dir=Path(models), options=EngineOptions())
        for label, width, height, count in selected_cases(args.cases):
            seconds = time_runs(edit_call(engine, width, height, count), args.runs, lambda: None)
            rows.append((label, "retouch eager (preview)", seconds / count, 0.0))
            print(f"  {label:6} retouch eager (preview) {seconds / count:7.3f} s/image", flush=True)
    print("  compiled: skipped (regional torch.compile runs on CUDA only)")
    summarise(rows)


def summarise(rows: list[tuple[str, str, float, float]]) -> None:
    by = {(label, mode): seconds for label, mode, seconds, _ in rows}
    for label, *_ in CASES:
        plain = by.get((label, "diffusers eager"))
        compiled = by.get((label, "retouch compiled"))
        if plain and compiled:
            print(f"{label}: compiled is {plain / compiled:.2f}x plain diffusers eager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attention-backend", default=None)
    parser.add_argument(
        "--cases", default=None, help="comma-separated subset of 1Kx1,1Kx4,2Kx1 (default: all)"
    )
    args = parser.parse_args()
    import torch

    if torch.cuda.is_available():
        run_cuda(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
