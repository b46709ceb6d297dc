"""A tiny random-weight FLUX.2 [klein] pipeline (Flux2KleinPipeline) for running Retouch
without real weights; cached on disk by retouch.engine.preview.

The preview model uses the real diffusers/transformers classes and the real spatial factors
(VAE 8x down, 2x2 patching, so 1024² is 4096 image tokens), with channels, layers and heads cut
to the minimum. Its output is noise, but every code path, tensor shape and size rule of the real
model runs, fast enough on a CPU for tests and demos. It is built offline in code (no hub).
"""

from __future__ import annotations

from typing import Any

from retouch.engine.preview_tokenizers import byte_level_qwen2_tokenizer

PREVIEW_VERSION = 1
"""Bump when the preview config changes: a cache built by another version is rebuilt."""

_SEED = 0

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

    tokenizer = build_tokenizer()
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


def build_tokenizer() -> Any:
    """The byte-level Qwen2 tokenizer with klein's specials and a chat template that accepts
    enable_thinking. Also what the benchmark's random-weight full-size klein uses (token ids
    differ from the real tokenizer's; timings do not)."""
    return byte_level_qwen2_tokenizer(
        _SPECIAL_TOKENS, model_max_length=1024, chat_template=_CHAT_TEMPLATE
    )
