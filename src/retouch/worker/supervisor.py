"""Runs `retouch worker` as a child of `retouch serve` and restarts it if it dies.

A separate process, not a thread: the API never imports torch, and a slow engine holding
the GIL can never delay an API answer."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping

from retouch.config import Settings
from retouch.jobs.database import DATABASE_URL_VARIABLE

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
# Beyond RETOUCH_DRAIN_SECONDS, the time a drained worker may take to put its job back and
# exit before it is SIGKILLed.
STOP_MARGIN_SECONDS = 10.0


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM if its parent (`retouch serve`) dies, even by SIGKILL,
    so no orphan worker or API process outlives its server."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def worker_command(settings: Settings) -> list[str]:
    """`retouch worker` with serve's data dir, model, device and config."""
    command = [sys.executable, "-m", "retouch", "worker", "--data-dir", str(settings.data_dir)]
    if settings.model:
        command += ["--model", settings.model]
    if settings.device:
        command += ["--device", settings.device]
    if settings.config:
        command += ["--config", str(settings.config)]
    return command


def worker_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: serve's own, which carries the storage URL, the S3 and AWS
    variables and every other RETOUCH_* setting, with the database URL set from the settings
    (it may have come from a flag). The URL travels here, not as --database-url: a password on
    a command line is visible to every local user in `ps`."""
    environment = dict(inherited)
    if settings.database_url is not None:
        environment[DATABASE_URL_VARIABLE] = settings.database_url
    return environment


class WorkerSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.command = worker_command(settings)
        self.environment = worker_environment(settings, os.environ)
        self.stop_wait_seconds = settings.drain_seconds + STOP_MARGIN_SECONDS
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._supervise, name="worker-supervisor", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = subprocess.Popen(
                    self.command,
                    env=self.environment,
                    preexec_fn=die_with_parent,
                    # Its own process group: a Ctrl-C in the terminal reaches serve alone,
                    # which stops the worker itself (stop() below) once the API has stopped;
                    # a worker hit by it too would exit first and be restarted for nothing.
                    process_group=0,
                )
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.error("worker exited with code %s; restarting it", code)
            self._stopping.wait(RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        """SIGTERM the worker, which drains (it finishes its running job within
        RETOUCH_DRAIN_SECONDS or puts it back in the queue), and wait for it: SIGKILL once
        that and a margin have passed. It is not restarted."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        log.info("stopping the worker (up to %g s)", self.stop_wait_seconds)
        process.terminate()
        try:
            process.wait(self.stop_wait_seconds)
        except subprocess.TimeoutExpired:
            log.warning("the worker did not stop in %g s; killing it", self.stop_wait_seconds)
            process.kill()
            process.wait()

    def hurry(self) -> None:
        """Another SIGTERM to a stopping worker: it puts its running job back in the queue at
        its next step, without waiting for the rest of its drain. Safe in a signal handler."""
        process = self._process
        if self._stopping.is_set() and process is not None and process.poll() is None:
            process.terminate()
