"""A tiny random-weight Qwen-Image-Edit pipeline (QwenImageEditPlusPipeline) for running Retouch
without real weights; cached on disk by retouch.engine.preview.

The real classes (FlowMatchEulerDiscreteScheduler, AutoencoderKLQwenImage,
QwenImageTransformer2DModel, a Qwen2.5-VL text encoder with its vision tower, a Qwen2 tokenizer
and the Qwen2-VL image processor) and the real spatial factors (VAE 8x down, 2x2 packing, so a
1024² output is 4096 image tokens), everything else cut to the minimum. Its output is noise, but
the pipeline's code paths and output token shapes are the real ones. Built offline in code: the
tokenizer is a byte-level vocabulary plus the special tokens of the pipeline's prompt template.

Two things differ from an ordinary preview, both because of what this pipeline is:

- The processor. The pipeline wants a Qwen2VLProcessor, which cannot be built here (its video
  processor needs torchvision). A subclass without the video part works, but diffusers cannot
  reload it as a pipeline component (model_index.json would name it by a Retouch module path,
  and its own from_pretrained resolves the image processor through AutoImageProcessor, which
  may pick the torchvision-based one where torchvision imports). So the pipeline is saved
  without its processor, the image processor's config beside it, and load_preview() rebuilds
  the processor (with the PIL image processor, as built) and hands it to from_pretrained as a
  component override. The pipeline build_preview_pipeline() returns saves itself that way from
  save_pretrained(), so the generic preview cache (preview.ensure_preview_model) needs nothing
  special; load_preview_pipeline(folder, dtype) is the engine's hook for loading it back.

- Reference sizes. The pipeline VAE-encodes every reference at ~1 MP and shows it to the vision
  encoder at ~384², through the module constants VAE_IMAGE_SIZE and CONDITION_IMAGE_SIZE; at
  those sizes a tiny model spends seconds on references alone (their 4096 tokens each also join
  every transformer pass). The preview pipeline is a subclass whose __call__ is the real one's
  code run against a copy of the module's globals with small values for those two constants
  (PREVIEW_REFERENCE_PIXELS, PREVIEW_CONDITION_PIXELS). Nothing global is patched, so a real
  pipeline in the same process (another thread included) is never affected, and every caller of
  a preview pipeline gets the speed-up without having to remember a context manager. The output
  size rules are untouched: outputs keep the real token shapes; only reference latents (and the
  vision encoder's view) are smaller. References of aspect 64:1 or more round to a zero side at
  the smaller sizes and fail (the real pipeline accepts up to 200:1); Retouch caps far below.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from retouch.engine.preview_tokenizers import byte_level_qwen2_tokenizer

PREVIEW_VERSION = 1
"""Bump when the preview config changes: a cache built by another version is rebuilt."""

PREVIEW_REFERENCE_PIXELS = 128 * 128
"""Area the preview VAE-encodes each reference at (the real pipeline: 1024 * 1024): 64 tokens."""
PREVIEW_CONDITION_PIXELS = 128 * 128
"""Area of the preview vision encoder's view of each reference (real: 384 * 384): 25 tokens."""

PROCESSOR_DIR = "processor"
"""Subfolder of a saved preview holding the image processor's config."""

_SEED = 0

# Sizes of the tiny model. Real Qwen-Image-Edit: VAE base width 96, widths x(1, 2, 4, 4), 2
# resnets per stage, 16 latent channels, temporal down (False, True, True) whose length gives the
# 8x spatial factor; transformer 60 blocks of 24 heads x 128 (RoPE axes 16/56/56), in_channels
# 64 (2x2 packed), joint dim 3584; Qwen2.5-VL-7B text encoder (28 layers, width 3584) with a
# 32-block vision tower (width 1280, patch 14, 2x2 merge).
_LATENT_CHANNELS = 16  # as in the real VAE (its latents_mean/std defaults are the real ones)
# Widths per stage 1, 2, 2, 2: the decoder's upsampling convs halve the width (so 2 is the least
# before each), and its full-resolution stage is 1 channel wide, where the VAE's RMS norms (over
# the channel axis of a 5-D tensor) cost ~0.1 s each at 1024² with 2 channels and ~0 with 1.
_VAE_WIDTH = 1
_VAE_WIDTH_MULT = (1, 2, 2, 2)  # 4 stages as in the real VAE
_VAE_RESNETS = 1  # per encoder stage, the least that changes the width (decoder: one more)
_VAE_TEMPORAL_DOWN = (False, True, True)  # real; 2 ** len = 8x spatial down/upsampling
_PATCH = 2  # the pipeline packs 2x2 latent patches into channels
_ROPE_AXES = (2, 2, 4)  # (frame, H, W) as in the real model; head dim = their sum
_HEADS = 1
_TEXT_WIDTH = 8
_TEXT_HEADS = 1
_TEXT_LAYERS = 1  # the pipeline reads the last hidden layer only
_MROPE_SECTION = (1, 1, 2)  # the text RoPE's (T, H, W) split of head_dim / 2, as the real 16/24/24
_VISION_WIDTH = 8
_VISION_HEADS = 1
_VISION_DEPTH = 2  # one windowed block and one full-attention block, as the real model mixes
_VISION_PATCH = 14  # real: patch 14, 2x2 merge, temporal patch 2 (processor and tower agree)
_VISION_MERGE = 2
_VISION_TEMPORAL_PATCH = 2
_VISION_WINDOW = 112
_MAX_POSITIONS = 32768  # byte-level prompts are long; RoPE needs no table, so this costs nothing
_TOKENIZER_MAX_LENGTH = 131072  # the real Qwen2.5-VL tokenizer's
_SCHEDULER = {  # Qwen-Image's: exponential resolution-dependent shift, stretched to 0.02
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "use_dynamic_shifting": True,
    "time_shift_type": "exponential",
}
_ZERO_COND_T = True
"""Qwen-Image-Edit-2511's transformer setting (2509: False): the references' tokens are
modulated as at t=0, so the transformer runs its timestep embedding on a doubled batch."""

# Special tokens of the Qwen2.5-VL tokenizer that the pipeline's template and processor use.
_SPECIAL_TOKENS = (
    "<|endoftext|>",  # pad
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",  # the processor repeats it once per merged vision patch
    "<|video_pad|>",
)


def build_preview_pipeline() -> Any:
    """Build the tiny pipeline in memory, deterministically (fixed seed, global RNG untouched).

    The result is a QwenImageEditPlusPipeline subclass whose calls use the preview reference
    sizes and whose save_pretrained() writes a folder load_preview() reads back. Typed Any:
    diffusers' classes are untyped."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    classes = _classes()
    tokenizer = _build_tokenizer()
    image_processor = classes.image_processor(
        patch_size=_VISION_PATCH,
        merge_size=_VISION_MERGE,
        temporal_patch_size=_VISION_TEMPORAL_PATCH,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        vae = AutoencoderKLQwenImage(  # type: ignore[no-untyped-call]
            base_dim=_VAE_WIDTH,
            z_dim=_LATENT_CHANNELS,
            dim_mult=list(_VAE_WIDTH_MULT),
            num_res_blocks=_VAE_RESNETS,
            temperal_downsample=list(_VAE_TEMPORAL_DOWN),
        )
        text_encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(
                text_config={
                    "vocab_size": len(tokenizer),
                    "hidden_size": _TEXT_WIDTH,
                    "intermediate_size": 2 * _TEXT_WIDTH,
                    "num_hidden_layers": _TEXT_LAYERS,
                    "num_attention_heads": _TEXT_HEADS,
                    "num_key_value_heads": _TEXT_HEADS,
                    "max_position_embeddings": _MAX_POSITIONS,
                    "rope_scaling": {"type": "mrope", "mrope_section": list(_MROPE_SECTION)},
                    "rope_theta": 1000000.0,
                    "bos_token_id": ids["<|endoftext|>"],
                    "eos_token_id": ids["<|im_end|>"],
                    "pad_token_id": tokenizer.pad_token_id,
                },
                vision_config={
                    "depth": _VISION_DEPTH,
                    "hidden_size": _VISION_WIDTH,
                    "intermediate_size": 2 * _VISION_WIDTH,
                    "num_heads": _VISION_HEADS,
                    "out_hidden_size": _TEXT_WIDTH,
                    "patch_size": _VISION_PATCH,
                    "spatial_merge_size": _VISION_MERGE,
                    "temporal_patch_size": _VISION_TEMPORAL_PATCH,
                    "window_size": _VISION_WINDOW,
                    "fullatt_block_indexes": [_VISION_DEPTH - 1],
                },
                image_token_id=ids["<|image_pad|>"],
                video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"],
                vision_end_token_id=ids["<|vision_end|>"],
                tie_word_embeddings=True,
            )
        )
        transformer = QwenImageTransformer2DModel(  # type: ignore[no-untyped-call]
            patch_size=_PATCH,
            in_channels=_LATENT_CHANNELS * _PATCH * _PATCH,
            out_channels=_LATENT_CHANNELS,
            # One block: attention over all tokens is quadratic and dominates the CPU time.
            num_layers=1,
            attention_head_dim=sum(_ROPE_AXES),
            num_attention_heads=_HEADS,
            joint_attention_dim=_TEXT_WIDTH,
            axes_dims_rope=_ROPE_AXES,
            zero_cond_t=_ZERO_COND_T,
        )
    models: tuple[Any, ...] = (vae, text_encoder, transformer)
    for model in models:
        model.eval()  # as from_pretrained returns them
    return classes.pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**_SCHEDULER),  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=classes.processor(image_processor=image_processor, tokenizer=tokenizer),
        transformer=transformer,
    )


def save_preview(pipe: Any, folder: Path, **save_kwargs: Any) -> None:
    """Save a preview pipeline so load_preview() can rebuild it: the pipeline without its
    processor (model_index.json lists it as null, _class_name QwenImageEditPlusPipeline), plus
    the image processor's config in PROCESSOR_DIR. The processor's tokenizer is the pipeline's
    own, saved with it. save_kwargs go to DiffusionPipeline.save_pretrained."""
    from diffusers import QwenImageEditPlusPipeline

    folder = Path(folder)
    plain: Any = QwenImageEditPlusPipeline(  # type: ignore[no-untyped-call]
        **{**pipe.components, "processor": None}
    )
    # diffusers warns that the (deliberately) absent processor "cannot be saved".
    saver_log = logging.getLogger("diffusers.pipelines.pipeline_utils")
    quiet = _DropMessages("self.processor=None")
    saver_log.addFilter(quiet)
    try:
        plain.save_pretrained(folder, **save_kwargs)
    finally:
        saver_log.removeFilter(quiet)
    pipe.processor.image_processor.save_pretrained(folder / PROCESSOR_DIR)


def load_preview(folder: Path, *, dtype: Any = None) -> Any:
    """Load a preview saved by save_preview() (or by the preview pipeline's save_pretrained):
    the processor is rebuilt around the saved tokenizer and image processor and passed to
    from_pretrained as a component override. dtype: a torch dtype, None for the saved one."""
    from transformers import Qwen2Tokenizer

    folder = Path(folder)
    classes = _classes()
    tokenizer = Qwen2Tokenizer.from_pretrained(folder / "tokenizer")
    image_processor = classes.image_processor.from_pretrained(folder / PROCESSOR_DIR)
    processor = classes.processor(image_processor=image_processor, tokenizer=tokenizer)
    extra = {} if dtype is None else {"dtype": dtype}
    return classes.pipeline.from_pretrained(
        folder, tokenizer=tokenizer, processor=processor, **extra
    )


def load_preview_pipeline(folder: Path, dtype: Any = None) -> Any:
    """The engine's hook (DiffusersEngine._load_pipeline): load_preview with a positional dtype."""
    return load_preview(folder, dtype=dtype)


def _build_tokenizer() -> Any:
    """A Qwen2 byte-level BPE tokenizer with no merges: one token per byte, plus the specials.

    One token per byte makes the pipeline's fixed system prompt far longer than 64 tokens, which
    it needs: it drops the first 64 tokens of every encoded prompt (the real tokenizer's length
    of the system part)."""
    return byte_level_qwen2_tokenizer(_SPECIAL_TOKENS, model_max_length=_TOKENIZER_MAX_LENGTH)


class _DropMessages(logging.Filter):
    """Drops log records whose message contains a given text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self._text not in record.getMessage()


class _Classes:
    """The classes that need transformers/diffusers, made on first use so that importing this
    module stays torch-free."""

    def __init__(self, pipeline: Any, processor: Any, image_processor: Any) -> None:
        self.pipeline = pipeline
        self.processor = processor
        self.image_processor = image_processor


@functools.cache
def _classes() -> _Classes:
    import inspect
    import types

    import diffusers
    import torch
    from diffusers import QwenImageEditPlusPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as edit_plus
    from transformers import Qwen2VLProcessor

    # The PIL image processor: the default Qwen2VLImageProcessor is built on torchvision.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    class PreviewQwenVLProcessor(Qwen2VLProcessor):  # type: ignore[misc]
        """Qwen2VLProcessor without the video processor (which needs torchvision): its
        sub-processors are just image_processor and tokenizer. It cannot be reloaded with
        from_pretrained; load_preview() rebuilds it."""

        def __init__(
            self,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: Any = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(  # type: ignore[no-untyped-call]
                image_processor, tokenizer, None, chat_template=chat_template, **kwargs
            )

    # The real __call__'s code, run against a copy of its module's globals in which the two
    # reference-size constants are small (see the module docstring).
    real_call = inspect.unwrap(QwenImageEditPlusPipeline.__call__)
    constants = {
        "VAE_IMAGE_SIZE": PREVIEW_REFERENCE_PIXELS,
        "CONDITION_IMAGE_SIZE": PREVIEW_CONDITION_PIXELS,
    }
    missing = [
        name
        for name in constants
        if name not in real_call.__code__.co_names or not hasattr(edit_plus, name)
    ]
    if missing:  # a diffusers release that sizes references differently: fail, not go slow
        raise RuntimeError(
            f"QwenImageEditPlusPipeline.__call__ of diffusers {diffusers.__version__} no longer"
            f" reads {missing}: {__name__} needs updating"
        )
    preview_call = types.FunctionType(
        real_call.__code__,
        {**vars(edit_plus), **constants},
        real_call.__name__,
        real_call.__defaults__,
        real_call.__closure__,
    )
    preview_call.__kwdefaults__ = real_call.__kwdefaults__
    functools.update_wrapper(preview_call, real_call)  # name, doc, annotations: same signature
    # Unwrapping the preview's __call__ must not lead back to the real sizes.
    del preview_call.__wrapped__  # type: ignore[attr-defined]

    class PreviewQwenImageEditPlusPipeline(QwenImageEditPlusPipeline):  # type: ignore[misc]
        """QwenImageEditPlusPipeline with the preview's reference sizes; save_pretrained()
        writes what load_preview() reads."""

        __call__ = torch.no_grad()(preview_call)

        def save_pretrained(self, save_directory: Any, **kwargs: Any) -> None:
            save_preview(self, Path(save_directory), **kwargs)

    for cls in (PreviewQwenVLProcessor, PreviewQwenImageEditPlusPipeline):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return _Classes(
        PreviewQwenImageEditPlusPipeline, PreviewQwenVLProcessor, Qwen2VLImageProcessorPil
    )
