"""Replicate's predictions API under /replicate/ (`api.replicate.com`'s routes, so the
`replicate` clients work unmodified with `base_url` pointed here): a translation onto
retouch.api.operations, in Replicate's input names, prediction object and errors."""
