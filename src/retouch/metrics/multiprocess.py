"""One host's processes seen as one: `retouch serve` runs one or more API processes and a
worker child, and a scrape reaches one API process. With PROMETHEUS_MULTIPROC_DIR set, every
process writes its values to files of its own in that folder (prometheus_client's multiprocess
mode) and the exposition sums them, the values of processes that have exited included (so a
restarted worker's counters never go down).

`serve` calls `enable` before it starts any child: uvicorn's API processes and the worker child
inherit the variable, and import prometheus_client with it set."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from retouch.metrics.registry import REGISTRY

MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "metrics"


def enable(data_dir: Path) -> Path:
    """Empties `<data_dir>/metrics` of its value files (the last run's values are not this
    one's) and points this process and its children at it. Call it before starting any child
    and before any metric is counted. A folder already given in PROMETHEUS_MULTIPROC_DIR is used
    instead (its value files removed the same way)."""
    folder = Path(os.environ.get(MULTIPROC_VARIABLE) or metrics_dir(data_dir))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_VARIABLE] = str(folder)
    # prometheus_client picks its value class when first imported, which `serve` has done by
    # now (the app's modules import the registry). Every metric of ours has labels, so none has
    # a value yet: the values made from now on are the multiprocess ones.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return folder


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_VARIABLE))


class _Ours:
    """This process's own metrics (single-process mode), as a collector of another registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def exposition_registry(*extra: Collector) -> CollectorRegistry:
    """What a scrape shows: the metrics of every process of the host in multiprocess mode, else
    this process's, and the `extra` collectors (the job database's gauges)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Ours())
    for collector in extra:
        registry.register(collector)
    return registry


def serve_worker_metrics(port: int, host: str) -> WSGIServer:
    """`retouch worker --metrics-port`: this worker's metrics over HTTP on host:port (a daemon
    thread), for a worker on a host with no API process to scrape. Returns the server (its
    `shutdown()` stops it)."""
    server, _ = start_http_server(port, addr=host, registry=exposition_registry())
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server
