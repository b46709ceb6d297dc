"""Retouch: self-hosted image editing from a text prompt."""
