"""A tiny random-weight FLUX.2 [klein] pipeline for running Retouch without real weights.

The preview model uses the real diffusers/transformers classes and the real spatial factors
(VAE 8x down, 2x2 patching, so 1024² is 4096 image tokens), with channels, layers and heads cut
to the minimum. Its output is noise, but every code path, tensor shape and size rule of the real
model runs, fast enough on a CPU for tests and demos. It is built offline in code (no hub), once,
and cached on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

PREVIEW_DIRNAME = "preview-flux2-klein"
"""Conventional folder name of the preview model (the loader uses data_dir/models/<this>)."""

PREVIEW_VERSION = 1
"""Bump when the preview config changes: a cache built by another version is rebuilt."""

_MARKER = "retouch-preview.json"
"""Written last, inside the temporary build folder: its presence means the build completed.
It lists every file with its size, so a folder damaged later is rebuilt too."""

_SEED = 0
_STALE_TMP_S = 3600.0
"""Leftover build folders older than this come from a crashed build and are removed."""

# Sizes of the tiny model. The spatial factors are the real ones (see module docstring); the
# rest is as small as the classes allow. Real klein 4B: VAE latent_channels 32 with 4 blocks
# (8x) and 2x2 patching (transformer in_channels 128), 5 double + 20 single blocks of 24 heads
# x 128, Qwen3-4B (36 layers, width 2560) read at layers (9, 18, 27) -> joint dim 7680.
_VAE_BLOCKS = 4  # 2 ** (4 - 1) = 8x down/upsampling, as in the real VAE
_VAE_CHANNELS = 2  # 1 is no faster on CPU (convolution overhead dominates)
_LATENT_CHANNELS = 4
_PATCH = 2  # the transformer sees 2x2 latent patches packed into channels
_ROPE_AXES = (2, 2, 2, 2)  # 4 axes (T, H, W, L) as in the real model; head dim = their sum
_HEADS = 1
_TEXT_WIDTH = 8
_TEXT_LAYERS = 3  # the real model stacks 3 hidden layers; the tiny one stacks all 3 of its own
_TEXT_HEADS = 1
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")

# Qwen3's chat template reduced to what the pipeline uses: user turns, the generation prompt, and
# the empty thinking block that enable_thinking=False adds.
_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def ensure_preview_model(cache_dir: Path) -> Path:
    """Return cache_dir holding the preview pipeline, building it there first if needed.

    The build happens in a temporary sibling folder that is renamed into place only when
    complete, so a crash never leaves a half model at cache_dir; a folder there that lacks the
    completion marker (or has another version's) is replaced.
    """
    if _is_complete(cache_dir):
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(cache_dir), dir=cache_dir.parent))
    try:
        build_preview_pipeline().save_pretrained(tmp)
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in tmp.rglob("*") if f.is_file()}
        (tmp / _MARKER).write_text(json.dumps({"version": PREVIEW_VERSION, "files": files}))
        _replace_dir(tmp, cache_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache_dir


def build_preview_pipeline() -> Any:
    """Build the tiny Flux2KleinPipeline in memory, deterministically (fixed seed, global RNG
    untouched). Typed Any: diffusers' classes are untyped."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        vae = AutoencoderKLFlux2(  # type: ignore[no-untyped-call]
            down_block_types=("DownEncoderBlock2D",) * _VAE_BLOCKS,
            up_block_types=("UpDecoderBlock2D",) * _VAE_BLOCKS,
            block_out_channels=(_VAE_CHANNELS,) * _VAE_BLOCKS,
            layers_per_block=0,  # only the down/upsampling convs (the decoder adds 1 resnet)
            latent_channels=_LATENT_CHANNELS,
            norm_num_groups=_VAE_CHANNELS,
            # Self-attention over all latent pixels: quadratic, 16k positions at 1024².
            mid_block_add_attention=False,
            patch_size=(_PATCH, _PATCH),
        )
        text_encoder = Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=_TEXT_WIDTH,
                intermediate_size=2 * _TEXT_WIDTH,
                num_hidden_layers=_TEXT_LAYERS,
                num_attention_heads=_TEXT_HEADS,
                num_key_value_heads=_TEXT_HEADS,
                head_dim=_TEXT_WIDTH // _TEXT_HEADS,
                max_position_embeddings=1024,  # the pipeline pads prompts to 512 tokens
                tie_word_embeddings=True,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        transformer = Flux2Transformer2DModel(  # type: ignore[no-untyped-call]
            patch_size=1,  # the pipeline patchifies the latents itself, as for the real model
            in_channels=_LATENT_CHANNELS * _PATCH * _PATCH,
            # One block: attention over all tokens is quadratic and dominates the CPU time.
            num_layers=0,
            num_single_layers=1,
            attention_head_dim=sum(_ROPE_AXES),
            num_attention_heads=_HEADS,
            joint_attention_dim=_TEXT_LAYERS * _TEXT_WIDTH,
            timestep_guidance_channels=16,
            axes_dims_rope=_ROPE_AXES,
            guidance_embeds=False,  # distilled klein: the pipeline passes guidance=None
        )
    return Flux2KleinPipeline(  # type: ignore[no-untyped-call]
        scheduler=FlowMatchEulerDiscreteScheduler(),  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def _build_tokenizer() -> Any:
    """A Qwen2 byte-level BPE tokenizer with no merges: one token per byte, plus the specials."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        additional_special_tokens=list(_SPECIAL_TOKENS[1:]),
        chat_template=_CHAT_TEMPLATE,
        model_max_length=1024,
    )


def _is_complete(folder: Path) -> bool:
    """The marker is there, of this version, and every file it lists has its recorded size."""
    try:
        marker = json.loads((folder / _MARKER).read_text())
        if marker["version"] != PREVIEW_VERSION:
            return False
        files: dict[str, int] = marker["files"]
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _replace_dir(built: Path, target: Path) -> None:
    """Move the finished build into place, replacing an incomplete folder there."""
    if target.exists():
        if _is_complete(target):  # another process finished first: keep its copy
            return
        # Rename the broken folder aside first so the target is never half-deleted.
        trash = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
        os.replace(target, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(built, target)
    except OSError:
        # Lost a race with another builder: fine if the winner's copy is complete.
        if not _is_complete(target):
            raise


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _remove_stale_builds(target: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for leftover in target.parent.glob(f"{_tmp_prefix(target)}*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue
