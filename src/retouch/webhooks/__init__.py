"""Webhooks: a finished request's result POSTed to the URL its submit named, signed per
Standard Webhooks with a secret per API key, retried with backoff until delivered or given up."""
