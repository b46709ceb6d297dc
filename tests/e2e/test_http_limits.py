"""The HTTP limits of a real `retouch serve`, over a raw socket: a head over 16 KiB answers
431, a head or a body too slow to arrive answers 408, each with the error envelope."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import RetouchProcess, seed_data_dir, server_env

# On SQLite only: the HTTP server's limits, before any store read.
pytestmark = pytest.mark.sqlite_only

# Generous hang guard for every read: the deadlines under test are 1 s and 2 s.
GUARD_SECONDS = 30


@pytest.fixture(scope="module")
def quick_server(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path
) -> Iterator[RetouchProcess]:
    """A server with short deadlines."""
    data_dir = tmp_path_factory.mktemp("http-limits") / "data"
    seed_data_dir(data_dir, models_cache)
    env = server_env(RETOUCH_HEADER_TIMEOUT_SECONDS="1", RETOUCH_BODY_TIMEOUT_SECONDS="2")
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    server.read_first_key()
    try:
        yield server
    finally:
        server.stop()


def connect(server: RetouchProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GUARD_SECONDS)


def rss_bytes(server: RetouchProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one answer on `sock`, read until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_oversized_head_answers_431(quick_server: RetouchProcess) -> None:
    with connect(quick_server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        status, body = answer(sock)
    assert status == 431
    assert body["error_code"] == 431001 and "16384 bytes" in body["error_message"]


def test_huge_header_is_not_held(quick_server: RetouchProcess) -> None:
    # A 64 MB header used to be gathered whole; now what follows the cap is read and dropped.
    before = rss_bytes(quick_server)
    with connect(quick_server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(1024):
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # closed once the linger after the 431 ended: fine
    assert rss_bytes(quick_server) - before < 16 * 1024 * 1024
    with connect(quick_server) as sock:
        sock.sendall(b"GET /docs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"


def test_head_under_the_cap_is_served(quick_server: RetouchProcess) -> None:
    with connect(quick_server) as sock:
        sock.sendall(
            b"GET /docs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Fill: "
            + b"a" * 15_000
            + b"\r\n\r\n"
        )
        assert sock.recv(12) == b"HTTP/1.1 200"


def test_slow_head_answers_408(quick_server: RetouchProcess) -> None:
    with connect(quick_server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        status, body = answer(sock)  # nothing more is sent: the 1 s deadline answers
    assert status == 408 and body["error_code"] == 408001
    assert "headers took longer than 1 s" in body["error_message"]


def test_keep_alive_pause_is_not_a_slow_head(quick_server: RetouchProcess) -> None:
    # Between requests uvicorn's keep-alive timeout (5 s) applies, not the 1 s head deadline.
    with connect(quick_server) as sock:
        for _ in range(2):
            sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while length:
                length -= len(sock.recv(length))
            time.sleep(1.5)


def test_silent_connection_is_closed(quick_server: RetouchProcess) -> None:
    with connect(quick_server) as sock:
        assert sock.recv(1) == b""


def submit_head(server: RetouchProcess) -> bytes:
    """A submit's head and the first byte of a 1000-byte body."""
    assert server.key is not None
    return (
        b"POST /v1/models/google/nano-banana-2/edit HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + server.key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )


def test_a_body_byte_after_the_408_does_not_keep_the_connection_open(
    quick_server: RetouchProcess,
) -> None:
    """The race a trickling client can hit: its next byte arrives just after the answer."""
    with connect(quick_server) as sock:
        sock.sendall(submit_head(quick_server))
        sock.settimeout(GUARD_SECONDS)
        data = sock.recv(65536)  # the 408, once the body's 2 s are up
        assert data.startswith(b"HTTP/1.1 408 ")
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.sendall(b" ")
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass


def test_trickled_body_answers_408(quick_server: RetouchProcess) -> None:
    with connect(quick_server) as sock:
        sock.sendall(submit_head(quick_server))
        # A byte every 0.2 s for 1.6 s never stalls (30 s would), but the whole body has 2 s.
        # None is sent near the answer, which closes the connection: a byte arriving after
        # it is answered with a reset, which may discard the answer before it is read.
        for _ in range(8):
            time.sleep(0.2)
            sock.sendall(b" ")
        sock.settimeout(GUARD_SECONDS)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    # Closed with the answer: a byte of the body arriving after it must not keep it open.
    assert b"\r\nconnection: close" in head.lower()
    parsed = json.loads(body)
    assert parsed["error_code"] == 408001 and "longer than 2 s" in parsed["error_message"]
