"""A loopback TCP proxy that a test can cut and restore: how the unit tier makes "the database
server is down" without stopping the one PostgreSQL server every test shares.

Cut, it closes every connection it carries and closes each new one as soon as it is accepted,
which a client sees as the server dropping it (the listening port stays ours, so nothing else
can take it meanwhile). Restored, it forwards again. And `wait_until`, for the tests that wait
for a process to notice.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import make_url


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url_through(self, url: str) -> str:
        """A database URL on the target with its host and port replaced by the proxy's."""
        return (
            make_url(url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Drop every connection, and every new one until restore()."""
        with self._lock:
            self._cut = True
            dropped, self._open = self._open, set()
        for sock in dropped:
            _drop(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        # shutdown() wakes the accept() blocked in the thread; close() alone does not.
        _drop(self._listener)
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            with self._lock:
                cut = self._cut
            if cut:
                _drop(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _drop(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._cut:  # cut while connecting
                    _drop(client)
                    _drop(upstream)
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):  # dropped by cut(), or by the other pump
            while data := source.recv(65536):
                sink.sendall(data)
        # One side ended or was dropped: end both, as a server going away would.
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        _drop(source)
        _drop(sink)


def _drop(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by its other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def proxy_to(url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the server of a database URL, closed at the end."""
    parsed = make_url(url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        yield proxy
    finally:
        proxy.close()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Returns once condition() is true; fails the test after `timeout` (a hang guard, far
    beyond what it takes) saying what never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)
