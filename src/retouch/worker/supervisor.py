"""Runs `retouch worker` as a child of `retouch serve` and restarts it if it dies.

A separate process, not a thread: the API never imports torch, and a slow engine holding
the GIL can never delay an API answer."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading

from retouch.config import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
STOP_GRACE_SECONDS = 10.0


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if `retouch serve` dies, even by SIGKILL, so no orphan
    worker outlives its server."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class WorkerSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.command = [
            sys.executable,
            "-m",
            "retouch",
            "worker",
            "--data-dir",
            str(settings.data_dir),
        ]
        if settings.model:
            self.command += ["--model", settings.model]
        if settings.device:
            self.command += ["--device", settings.device]
        if settings.config:
            self.command += ["--config", str(settings.config)]
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
                self._process = subprocess.Popen(self.command, preexec_fn=_die_with_parent)
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.error("worker exited with code %s; restarting it", code)
            self._stopping.wait(RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        """SIGTERM the worker (its running job goes back to the queue), then wait."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
