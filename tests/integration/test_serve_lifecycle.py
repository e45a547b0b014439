"""serve.py survives, or ends cleanly on, the death or stall of any of its processes, and
slow clients cannot hold its connections."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.serving_process import (
    REPO,
    Server,
    post_file,
    request,
    running_server,
    serve_command,
    thread_env,
)

FAST = ("request_timeout=3", "log_level=warning")


@pytest.fixture(scope="module")
def logs(tiny_trained_logs: Path) -> Path:
    return tiny_trained_logs


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line((32, 6, 32, 58), fill=0, width=6)
    path = tmp_path_factory.mktemp("img") / "bar.png"
    image.save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def shared(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the faults it survives, in file order: slow clients, a stalled worker,
    then a killed one (its restart makes the printed worker pid stale)."""
    log = tmp_path_factory.mktemp("shared") / "s.log"
    slow = ("read_timeout=2", "max_connections=8")
    with running_server(f"paths.log_dir={logs}", *FAST, *slow, log=log) as server:
        yield server


def _processes(server_log: Path) -> dict[str, int]:
    """The pids serve.py prints once it runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(
            r"Processes: serve.py (\d+), HTTP (\d+), inference workers (\d+), manager (\d+)",
            server_log.read_text(),
        )
        if found:
            return dict(
                zip(("main", "http", "worker", "manager"), map(int, found.groups()), strict=True)
            )
        time.sleep(0.2)
    raise AssertionError(f"serve.py printed no process list:\n{server_log.read_text()[-2000:]}")


def _health(url: str) -> int:
    return request(url + "health", method="GET").status


def _wait_for(condition, seconds: float) -> float:
    """Seconds until `condition()` held; fails after `seconds`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "timed out"
        time.sleep(0.1)
    return time.monotonic() - start


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _slow_client(port: int, data: bytes) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(data)
    return client


def _closed_by_server(client: socket.socket) -> bool:
    """The server closed the connection (after a 503 when it came past the cap)."""
    try:
        while chunk := client.recv(1024):
            assert chunk.startswith(b"HTTP/1.1 503"), chunk
        return True
    except (ConnectionResetError, TimeoutError):
        return False


@pytest.mark.slow
def test_slow_clients_are_cut_off_and_capped(shared: Server, png: bytes) -> None:
    server = shared  # read_timeout=2, max_connections=8
    slow_headers = [
        _slow_client(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\n") for _ in range(6)
    ]
    slow_body = [
        _slow_client(
            server.port,
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"image": "',
        )
        for _ in range(4)
    ]
    time.sleep(0.5)
    # Ten connections held open: past the cap a new request is refused, not queued.
    assert _health(server.url) == 503
    start = time.monotonic()
    for client in slow_headers + slow_body:
        assert _closed_by_server(client)
        client.close()
    assert time.monotonic() - start < 2 + 3
    assert post_file(server.url, png).status == 200


def test_a_stalled_worker_gets_504_on_the_http_side_and_fails_health(
    shared: Server, png: bytes
) -> None:
    server = shared
    worker = _processes(server.log)["worker"]
    os.kill(worker, signal.SIGSTOP)
    try:
        start = time.monotonic()
        answer = post_file(server.url, png)
        assert answer.status == 504, answer.body
        assert time.monotonic() - start < 3 + 1.5
        _wait_for(lambda: _health(server.url) == 503, 5)
    finally:
        os.kill(worker, signal.SIGCONT)
    _wait_for(lambda: _health(server.url) == 200, 10)
    assert post_file(server.url, png).status == 200


def test_a_killed_worker_is_restarted_and_serves_again(shared: Server, png: bytes) -> None:
    server = shared
    os.kill(_processes(server.log)["worker"], signal.SIGKILL)
    _wait_for(lambda: _health(server.url) == 503, 5)
    # Requests during the restart end within request_timeout (504) or are answered.
    start = time.monotonic()
    assert post_file(server.url, png).status in (200, 500, 504)
    assert time.monotonic() - start < 3 + 1.5
    _wait_for(lambda: _health(server.url) == 200, 120)
    assert post_file(server.url, png).status == 200
    assert server.process.poll() is None  # the same server, still running


def _serve(logs: Path, log: Path, port: int) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            serve_command(f"port={port}", f"paths.log_dir={logs}", *FAST),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env=thread_env(),
            start_new_session=True,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def started(logs: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path, str]]:
    """A serve.py (own process group) that is ready; whatever is left is killed after."""
    port = _free_port()
    log = tmp_path / "s.log"
    process = _serve(logs, log, port)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(lambda: process.poll() is not None or _alive(url), 180)
        assert process.poll() is None, process.stderr.read()
        yield process, log, url
    finally:
        if not _group_gone(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def _alive(url: str) -> bool:
    try:
        return _health(url) == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_killed_http_process_stops_the_server_in_one_line(started) -> None:
    process, log, url = started
    os.kill(_processes(log)["http"], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "died (killed by SIGKILL)" in errors[0], stderr[-2000:]
    _wait_for(lambda: _group_gone(process.pid), 10)  # no orphan


@pytest.mark.slow
def test_a_killed_serve_py_takes_every_process_along(started) -> None:
    process, log, url = started
    pids = _processes(log)
    os.kill(pids["main"], signal.SIGKILL)
    process.wait(10)  # reaped: what is left of the group are its children
    _wait_for(lambda: _group_gone(process.pid), 10)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.socket() as probe:  # the port is free for the next serve.py
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
