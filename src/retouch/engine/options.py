"""How an operator wants an engine run: device, precision and the GPU speed levers.
Plain data, no torch: the API and the configuration read it too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineOptions:
    device: str | None = None
    """Torch device, e.g. "cuda:1"; None picks CUDA when available, else the CPU."""
    dtype: str | None = None
    """"bfloat16", "float16" or "float32"; None: bfloat16 on CUDA, float32 on the CPU."""
    compile: bool = False
    """Regional torch.compile of the transformer's repeated blocks (CUDA only), with output
    sizes bucketed and warmed up at load so requests never wait for a compile."""
    attention_backend: str | None = None
    """diffusers attention backend, e.g. "_native_cudnn", "flash", "_flash_3", "sage";
    backends whose name ends in "_hub" download kernels at run time and are refused."""
    vae_tiling: bool | None = None
    """None: tile the VAE only for outputs above 2 MP; True/False force it."""
    cpu_offload: bool = False
    """enable_model_cpu_offload(): fits small GPUs, costs speed."""
    steps: int | None = None
    """Denoising steps; None: the model's default."""
    quantize: str | None = None
    """"fp8": the transformer's linear layers in FP8 with dynamic activation scaling (CUDA,
    compute capability 8.9 or newer); None: the weights' own precision."""
    batch_max: int = 1
    """How many queued jobs of this endpoint and generation size a worker may claim and run
    as one batched call (1: one job at a time)."""
    cache_mib: int | None = None
    """Memory for cached conditioning (prompt embeddings, reference latents), in MiB on the
    engine's device; None: the engine's default; 0 turns the cache off."""
