"""Cached conditioning: an LRU of the tensors an edit computes from its prompt and its
references before denoising (prompt embeddings, reference latents), bounded in bytes.

Chained edits feed an output back as a reference, retries and `num_images` variations repeat
a prompt, and many users send the same prompts: each of those skips the text encoder or the
VAE encode. A cached tensor is exactly what the computation returned, so outputs are the same
bit for bit with or without the cache; callers must not change a cached tensor in place.

No torch import: values are anything with `nbytes` (a tensor) or tuples of such.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cachetools import LRUCache
from PIL import Image

Value = TypeVar("Value")

DEFAULT_CACHE_MIB = 512
"""When the options set none. On klein 4B a prompt's embeddings are 7.5 MiB (512 tokens x 7680,
bf16) and a 1 MP reference's latents 1 MiB: about 40 prompts and 200 references."""


def size_of(value: Any) -> int:
    """Bytes a cached value holds on its device: a tensor's, or the sum over a tuple's."""
    if isinstance(value, tuple):
        return sum(size_of(item) for item in value)
    nbytes = getattr(value, "nbytes", None)
    if nbytes is None:  # a torch tensor has nbytes; anything else is too small to count
        return 0
    return int(nbytes)


def image_key(image: Image.Image) -> tuple[str, int, int, str]:
    """What a reference's latents depend on: its pixels (hashed), size and mode."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
    return digest, image.width, image.height, image.mode


class ConditioningCache:
    """get_or_compute(key, compute): the cached value, else compute() stored under key, the
    least recently used values going first once `max_bytes` would be passed. A value larger
    than the whole cache is returned but not kept. max_bytes 0: no cache. Thread-safe; the
    computation itself runs outside the lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._values: LRUCache[Hashable, Any] = LRUCache(
            maxsize=max(max_bytes, 1), getsizeof=size_of
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        if self.max_bytes <= 0:
            return compute()
        with self._lock:
            try:
                value: Value = self._values[key]
            except KeyError:
                self.misses += 1
            else:
                self.hits += 1
                return value
        value = compute()
        if size_of(value) <= self.max_bytes:
            with self._lock:
                self._values[key] = value
        return value

    @property
    def bytes(self) -> int:
        """What the cached values hold now."""
        with self._lock:
            return int(self._values.currsize) if self.max_bytes > 0 else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
