"""Prometheus metrics: their definitions (`registry.py`), the HTTP middleware (`http.py`), the
job database's gauges read at scrape time (`collectors.py`) and one host's processes seen as
one (`multiprocess.py`). The API serves them at `GET /metrics` (`retouch.api.metrics`)."""
