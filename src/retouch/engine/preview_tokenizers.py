"""Tokenizers for the preview models, built in code: no hub, no files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def byte_level_qwen2_tokenizer(
    special_tokens: Sequence[str], *, model_max_length: int, chat_template: str | None = None
) -> Any:
    """A Qwen2 byte-level BPE tokenizer with no merges: one token per byte, then the special
    tokens (the first is the end-of-text/padding token). Any text encodes, and token counts
    are long, which the Qwen-Image pipeline needs (it drops its prompt template's first 64)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    for token in special_tokens:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        additional_special_tokens=list(special_tokens[1:]),
        chat_template=chat_template,
        model_max_length=model_max_length,
    )
