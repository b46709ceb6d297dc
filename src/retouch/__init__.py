"""Retouch: self-hosted image editing from a text prompt."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retouch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
