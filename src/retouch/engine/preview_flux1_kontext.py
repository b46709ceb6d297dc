"""A tiny random-weight FLUX.1 Kontext pipeline (FluxKontextPipeline) for running Retouch
without real weights; cached on disk by retouch.engine.preview.

Same idea as the klein preview: the real classes (CLIP and T5 text encoders with their
tokenizers, FluxTransformer2DModel, AutoencoderKL) and the real spatial factors (VAE 8x down,
2x2 packing, so 1024² is 4096 image tokens), everything else cut to the minimum. The
tokenizers are built in code from a byte-level (CLIP) or character (T5) vocabulary: no hub.
"""

from __future__ import annotations

import string
from typing import Any

PREVIEW_VERSION = 1
"""Bump when the preview config changes: a cache built by another version is rebuilt."""

_SEED = 0

# Real FLUX.1 Kontext [dev]: VAE with 4 blocks (8x), 16 latent channels, scaling 0.3611 and
# shift 0.1159; transformer in_channels 64 (2x2 packed), 19 double + 38 single blocks of 24
# heads x 128 (RoPE axes 16/56/56), guidance-embedded; CLIP-L (768 pooled) and T5-XXL (4096).
_VAE_BLOCKS = 4  # 2 ** (4 - 1) = 8x down/upsampling, as in the real VAE
_VAE_CHANNELS = 2
_LATENT_CHANNELS = 4
_PATCH = 2  # the pipeline packs 2x2 latent patches into channels
_ROPE_AXES = (2, 2, 4)  # 3 axes (index, H, W) as in the real model; head dim = their sum
_CLIP_WIDTH = 8
_T5_WIDTH = 8
_CLIP_MAX_TOKENS = 77  # the pipeline pads CLIP prompts to the tokenizer's model_max_length
_CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
_T5_SPECIALS = ("<pad>", "</s>", "<unk>")
_VAE_SCALING = 0.3611
_VAE_SHIFT = 0.1159
_SCHEDULER = {  # FLUX.1's: resolution-dependent shift (the pipeline passes mu)
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def build_preview_pipeline() -> Any:
    """Build the tiny FluxKontextPipeline in memory, deterministically (fixed seed, global RNG
    untouched). Typed Any: diffusers' classes are untyped."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = _clip_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        vae = AutoencoderKL(  # type: ignore[no-untyped-call]
            down_block_types=("DownEncoderBlock2D",) * _VAE_BLOCKS,
            up_block_types=("UpDecoderBlock2D",) * _VAE_BLOCKS,
            block_out_channels=(_VAE_CHANNELS,) * _VAE_BLOCKS,
            layers_per_block=0,  # only the down/upsampling convs (the decoder adds 1 resnet)
            latent_channels=_LATENT_CHANNELS,
            norm_num_groups=_VAE_CHANNELS,
            mid_block_add_attention=False,  # attention over every latent pixel is quadratic
            sample_size=1024,  # tile size when tiling is on, as in the real VAE
            scaling_factor=_VAE_SCALING,
            shift_factor=_VAE_SHIFT,  # the pipeline needs one (the class default is None)
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=_CLIP_WIDTH,
                intermediate_size=2 * _CLIP_WIDTH,
                projection_dim=_CLIP_WIDTH,
                num_hidden_layers=1,
                num_attention_heads=1,
                max_position_embeddings=_CLIP_MAX_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                # The pooled output is read at the first end-of-text token.
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer_2),
                d_model=_T5_WIDTH,
                d_kv=_T5_WIDTH,
                d_ff=2 * _T5_WIDTH,
                num_layers=1,
                num_heads=1,
                relative_attention_num_buckets=8,
                pad_token_id=tokenizer_2.pad_token_id,
                eos_token_id=tokenizer_2.eos_token_id,
            )
        )
        transformer = FluxTransformer2DModel(  # type: ignore[no-untyped-call]
            patch_size=1,  # the pipeline packs the latents itself, as for the real model
            in_channels=_LATENT_CHANNELS * _PATCH * _PATCH,
            num_layers=0,  # one single-stream block: attention over all tokens dominates
            num_single_layers=1,
            attention_head_dim=sum(_ROPE_AXES),
            num_attention_heads=1,
            joint_attention_dim=_T5_WIDTH,
            pooled_projection_dim=_CLIP_WIDTH,
            guidance_embeds=True,  # Kontext [dev] is guidance-distilled
            axes_dims_rope=_ROPE_AXES,
        )
    return FluxKontextPipeline(  # type: ignore[no-untyped-call]
        scheduler=FlowMatchEulerDiscreteScheduler(**_SCHEDULER),  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _clip_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer with no merges: every byte, alone and word-final."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    pieces = [*symbols, *(symbol + "</w>" for symbol in symbols), *_CLIP_SPECIALS]
    # Without model_max_length the tokenizer's default overflows when padding to it.
    return CLIPTokenizer(
        vocab={piece: i for i, piece in enumerate(pieces)},
        merges=[],
        model_max_length=_CLIP_MAX_TOKENS,
    )


def _t5_tokenizer() -> Any:
    """A T5 unigram tokenizer over single printable characters plus the word-start marker."""
    from transformers import T5Tokenizer

    characters = [c for c in string.printable if not c.isspace()]
    vocab = [(token, 0.0) for token in _T5_SPECIALS]
    vocab += [("▁", -2.0), *((c, -3.0) for c in characters)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)
