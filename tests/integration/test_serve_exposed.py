"""serve.py made fit to expose: LitServe's API key (LIT_SERVER_API_KEY / X-API-Key) and a
Prometheus /metrics endpoint, against a real server with two inference workers and two HTTP
processes, read with an HTTP client and prometheus_client's text-format parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.rendered_chars import render_character
from helpers.serving_process import Server, multipart, request, running_server

KEY = "test-key-5f2c"
GOOD = 9  # images predicted (200)
BAD = 3  # bodies that are not images (422), with the key


@pytest.fixture(scope="module")
def logs(tiny_trained_logs: Path) -> Path:
    return tiny_trained_logs


@pytest.fixture(scope="module")
def server(logs: Path) -> Iterator[Server]:
    with running_server(
        f"paths.log_dir={logs}",
        "metrics=true",
        "workers=2",
        "api_servers=2",
        "max_batch_size=4",
        "max_image_mb=1",
        f"corrections_dir={logs.parent / 'exposed_corrections'}",
        log=logs.parent / "server.log",
        env={"LIT_SERVER_API_KEY": KEY},
    ) as server:
        yield server


def predict(server: Server, data: bytes, key: str | None) -> int:
    body, headers = multipart("image", "a.png", data)
    if key is not None:
        headers["X-API-Key"] = key
    return request(server.url + "predict", body, headers).status


def scrape(server: Server, key: str | None = KEY) -> dict[tuple[str, tuple], float]:
    """GET /metrics parsed by prometheus_client's own text-format parser."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = request(
        server.url + "metrics", headers={"X-API-Key": key} if key else {}, method="GET"
    )
    assert answer.status == 200, answer.body
    text = answer.body.decode() if isinstance(answer.body, bytes) else str(answer.body)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_the_api_key_guards_predict_and_metrics_but_not_the_page(
    server: Server, tmp_path: Path
) -> None:
    image = render_character("A", tmp_path / "a.png", font_size=80).read_bytes()
    assert predict(server, image, key=None) == 401
    assert predict(server, image, key="wrong") == 401
    assert predict(server, image, key=KEY) == 200
    # Refused before the body is read: an oversized upload without the key gets 401, not 413.
    assert predict(server, b"\0" * 3_000_000, key=None) == 401
    for path in ("metrics", "health", "info"):  # LitServe guards /health and /info itself
        assert request(server.url + path, method="GET").status == 401, path
        answer = request(server.url + path, headers={"X-API-Key": KEY}, method="GET")
        assert answer.status == 200, path
    assert request(server.url, method="GET").status == 200  # the page
    # Corrections become training data: nobody without the key may add any.
    body, headers = multipart("image", "a.png", image)
    assert request(server.url + "correction", body, headers).status == 401
    assert not list((server_corrections(server)).glob("*.json"))
    keyed = request(server.url + "correction", body, {**headers, "X-API-Key": KEY})
    assert keyed.status in (400, 422), keyed.body  # past the gate: it names no character


def server_corrections(server: Server) -> Path:
    return Path(server.log).parent / "exposed_corrections"


def test_metrics_add_up_over_every_worker_and_http_process(server: Server, tmp_path: Path) -> None:
    before = scrape(server)
    image = render_character("7", tmp_path / "7.png", font_size=70).read_bytes()
    sends = [(image, KEY)] * GOOD + [(b"not an image", KEY)] * BAD + [(image, None)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda args: predict(server, *args), sends))
    assert sorted(statuses) == sorted([200] * GOOD + [422] * BAD + [401])

    def grown(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return latest.get(key, 0.0) - before.get(key, 0.0)

    deadline = time.monotonic() + 30  # the logger process drains its queue asynchronously
    while True:
        latest = scrape(server)
        if grown("emnist_predict_request_seconds_count") >= len(sends):
            break
        assert time.monotonic() < deadline, latest
        time.sleep(0.3)
    # Several scrapes, answered by either HTTP process, read the same sums.
    for _ in range(4):
        latest = scrape(server)
        assert grown("emnist_predict_requests_total", status="200") == GOOD
        assert grown("emnist_predict_requests_total", status="422") == BAD
        assert grown("emnist_predict_requests_total", status="401") == 1
        assert grown("emnist_predict_errors_total", status="422") == BAD
        assert grown("emnist_predict_errors_total", status="401") == 1
        assert grown("emnist_predict_errors_total", status="200") == 0
        assert grown("emnist_predict_request_seconds_count") == len(sends)
        assert grown("emnist_predict_request_seconds_bucket", le="+Inf") == len(sends)
        assert grown("emnist_predict_request_seconds_sum") > 0
        # Every predicted request was in exactly one batch of at most max_batch_size.
        assert grown("emnist_predict_batch_size_sum") == GOOD
        assert 1 <= grown("emnist_predict_batch_size_count") <= GOOD
        assert grown("emnist_predict_batch_size_bucket", le="4.0") == grown(
            "emnist_predict_batch_size_count"
        )
