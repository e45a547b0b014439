"""A real `serve.py` process on 127.0.0.1 for tests, and a tiny stdlib HTTP client for it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180
STOP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(*overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "serve.py"), *overrides]


def run_serve(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """serve.py expected to stop by itself (bad settings, bad model)."""
    return subprocess.run(
        serve_command(*overrides),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=thread_env(),
    )


def thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Server:
    url: str
    port: int
    log: Path
    process: subprocess.Popen

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _healthy(url: str, api_key: str | None = None) -> bool:
    health = urllib.request.Request(url + "health", headers={"X-API-Key": api_key or ""})
    try:
        with urllib.request.urlopen(health, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_server(
    *overrides: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start serve.py on a free port, wait until it answers, and stop it with SIGTERM after.

    The server runs in its own process group, so nothing it started can outlive the test: the
    group must be empty after a clean stop (and is killed, failing the test, if it is not).
    """
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            serve_command(f"port={port}", "host=127.0.0.1", *overrides),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**thread_env(), **(env or {})},
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}/", port, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(server.url, (env or {}).get("LIT_SERVER_API_KEY")):
            if process.poll() is not None:
                raise RuntimeError(
                    f"serve.py exited with {process.returncode}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve.py not ready in {START_TIMEOUT} s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        stop(server)


def stop(server: Server) -> None:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    # Every process serve.py started (HTTP servers, inference workers, LitServe's manager).
    deadline = time.monotonic() + STOP_TIMEOUT
    leftover = True
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            leftover = False
            break
        time.sleep(0.2)
    if leftover:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise RuntimeError(f"serve.py left processes running after SIGTERM:\n{server.log_tail()}")
    if process.returncode != 0:
        raise RuntimeError(f"serve.py stopped with {process.returncode}:\n{server.log_tail()}")


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> Answer:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw
    return Answer(status, body, got)


def raw_post(url: str, body: bytes) -> Answer:
    """POST /predict with no Content-Type header at all (urllib always adds one)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, json.loads(response.read()), dict(response.headers))
    finally:
        connection.close()


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/png") -> tuple:
    """A multipart/form-data body with one file field: (body, headers)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_file(url: str, data: bytes, filename: str = "image.png") -> Answer:
    body, headers = multipart("image", filename, data)
    return request(url + "predict", body, headers)


def post_json(url: str, payload: Any) -> Answer:
    return request(
        url + "predict", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )


def socket_post(
    url: str, body: bytes, content_type: str | None, length: int | None = None
) -> Answer:
    """POST /predict written byte by byte on a raw socket: any Content-Type (or none) and a
    Content-Length that may claim more than is sent (the rest never comes: the socket's
    sending side is shut, so the server sees the body end early)."""
    parts = urllib.parse.urlsplit(url)
    head = ["POST /predict HTTP/1.1", f"Host: {parts.hostname}:{parts.port}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    head += [f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if length is not None and length > len(body):
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1]) if status_line else 0
    return Answer(status, json.loads(payload) if payload else None, {})


def disconnect_mid_upload(url: str, sent: bytes, claimed: int) -> None:
    """Start an upload that claims `claimed` bytes, send `sent`, and hang up at once."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {claimed}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
