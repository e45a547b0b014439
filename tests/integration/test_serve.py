"""serve.py as a real server process: API answers equal predict.py's, bad input, concurrency."""

from __future__ import annotations

import base64
import csv
import io
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers.configs import compose_config
from helpers.rendered_chars import render_character
from helpers.serving_process import (
    REPO,
    Server,
    disconnect_mid_upload,
    multipart,
    post_file,
    post_json,
    raw_post,
    request,
    run_serve,
    running_server,
    socket_post,
    thread_env,
)
from PIL import Image

from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.export import export_onnx
from emnist_lightning.inference.model_files import load_model
from emnist_lightning.inference.preprocess import load_character
from emnist_lightning.serving.server import check_config
from emnist_lightning.training.run import train

# The test server refuses images over 1 MB and 4 megapixels, so the limits are cheap to hit.
LIMITS = ("max_image_mb=1", "max_megapixels=4")
CHARS = "A7bK3eR"


@pytest.fixture(scope="module")
def logs(tiny_emnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logs/ folder holding one tiny trained run (ckpt_path=best finds it) and its ONNX export."""
    logs = tmp_path_factory.mktemp("serve") / "logs"
    run = logs / "train" / "runs" / "tiny"
    cfg = compose_config(
        "train",
        [
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "data.batch_size=64",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "++callbacks.progress_bar=null",
        ],
        run,
    )
    train(cfg)
    return logs


@pytest.fixture(scope="module")
def server(logs: Path) -> Iterator[Server]:
    with running_server(f"paths.log_dir={logs}", *LIMITS, log=logs.parent / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Characters as a user's files: PNG and JPEG, dark-on-light and light-on-dark."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, char in enumerate(CHARS):
        path = render_character(
            char, folder / f"{i}_{char}.png", font_size=60 + 12 * i, dark_on_light=i % 2 == 0
        )
        if i % 3 == 2:
            jpeg = path.with_suffix(".jpg")
            Image.open(path).save(jpeg, quality=90)
            path.unlink()
            path = jpeg
        paths.append(path)
    return paths


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_page_static_files_health_and_docs_are_served(server: Server) -> None:
    page = request(server.url, method="GET")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    html = page.body.decode()
    assert '<canvas id="pad"' in html and 'type="file"' in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("static/app.js", "static/style.css"):
        answer = request(server.url + asset, method="GET")
        assert answer.status == 200, asset
        # Served by the app itself: nothing is fetched from anywhere else.
        assert "http://" not in answer.body.decode() and "https://" not in answer.body.decode()
    assert "http" not in html.replace('"http-equiv"', "")
    assert request(server.url + "health", method="GET").body == b"ok"
    openapi = request(server.url + "openapi.json", method="GET").body
    content = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}


def test_predictions_equal_predict_py_for_the_same_files(
    server: Server, logs: Path, images: list[Path], tmp_path: Path
) -> None:
    cli = subprocess.run(
        [
            sys.executable,
            str(REPO / "predict.py"),
            f"paths.log_dir={logs}",
            f"images=[{images[0].parent}]",
            "top_k=5",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=thread_env(),
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    with (tmp_path / "predictions.csv").open() as f:
        expected = {Path(row["file"]).name: row for row in csv.DictReader(f)}
    assert set(expected) == {p.name for p in images}
    for path in images:
        row = expected[path.name]
        as_file = post_file(server.url, path.read_bytes(), path.name)
        as_json = post_json(server.url, {"image": base64.b64encode(path.read_bytes()).decode()})
        for answer in (as_file, as_json):
            assert answer.status == 200, answer.body
            got = answer.body
            assert got["prediction"] == row["prediction"], path.name
            assert got["probability"] == pytest.approx(float(row["probability"]), abs=1e-4)
            assert [t["character"] for t in got["top"]] == [row[f"top{r}"] for r in range(1, 6)]
            for rank, top in enumerate(got["top"], start=1):
                assert top["probability"] == pytest.approx(
                    float(row[f"top{rank}_probability"]), abs=1e-4
                )
        # `input` is the 28x28 image the model saw: predict.py's preprocessing of the file.
        seen = Image.open(io.BytesIO(base64.b64decode(as_file.body["input"])))
        assert seen.size == (28, 28) and seen.mode == "L"
        reference = load_character(path).squeeze(0).numpy() * 255
        assert np.abs(np.asarray(seen, dtype=np.float32) - reference).max() <= 0.51


def test_corrections_are_off_unless_a_folder_is_given(server: Server, images: list[Path]) -> None:
    info = request(server.url + "info", method="GET").body
    assert info["model"]["corrections"] is False
    assert isinstance(info["model"]["look_alikes"], list)
    body, headers = multipart("image", "a.png", images[0].read_bytes())
    answer = request(server.url + "correction", body, headers)
    assert answer.status == 404 and "corrections_dir=<folder>" in answer.body["detail"]
    predicted = post_file(server.url, images[0].read_bytes()).body
    assert isinstance(predicted["look_alikes"], list)


def test_a_data_url_from_a_canvas_is_accepted(server: Server, images: list[Path]) -> None:
    data = images[0].read_bytes()
    plain = post_json(server.url, {"image": base64.b64encode(data).decode()})
    as_url = post_json(
        server.url, {"image": "data:image/png;base64," + base64.b64encode(data).decode()}
    )
    assert as_url.status == 200 and as_url.body["prediction"] == plain.body["prediction"]
    assert as_url.body["input"] == plain.body["input"]


BLANK = _png(Image.new("L", (120, 90), 250))
HUGE_PIXELS = _png(Image.new("1", (2100, 2100), 1))  # 4.4 megapixels in a few kilobytes
BIG_FILE = bytes(1_100_000)  # over 1 MB as a file, under the body limit with its framing
BAD_REQUESTS = {
    "not an image": (lambda url: post_file(url, b"hello, not pixels"), 422, "not an image Pillow"),
    "not an image (JSON)": (
        lambda url: post_json(url, {"image": base64.b64encode(b"GIF89a junk").decode()}),
        422,
        "not an image Pillow",
    ),
    "blank drawing": (lambda url: post_file(url, BLANK), 422, "no ink found"),
    "empty body": (
        lambda url: request(url + "predict", b"", {"Content-Type": "application/json"}),
        400,
        "body is empty",
    ),
    "empty file": (lambda url: post_file(url, b""), 400, "image is empty"),
    "file over the size limit": (lambda url: post_file(url, BIG_FILE), 413, "over the 1 MB limit"),
    "body over the size limit": (
        lambda url: post_json(url, {"image": base64.b64encode(bytes(1_500_000)).decode()}),
        413,
        "larger than",
    ),
    "too many pixels": (lambda url: post_file(url, HUGE_PIXELS), 413, "megapixels"),
    "wrong content type": (
        lambda url: request(url + "predict", BLANK, {"Content-Type": "image/png"}),
        415,
        "is not accepted",
    ),
    "form-urlencoded (curl -d)": (
        lambda url: request(url + "predict", b"image=abc", {}),  # urllib's default type
        415,
        "application/x-www-form-urlencoded is not accepted",
    ),
    "no content type": (lambda url: raw_post(url, b"xyz"), 415, "Content-Type (none)"),
    "JSON that is not JSON": (
        lambda url: request(url + "predict", b"{nope", {"Content-Type": "application/json"}),
        400,
        "not valid JSON",
    ),
    "JSON without image": (lambda url: post_json(url, {"picture": "x"}), 400, 'no "image"'),
    "bad base64": (lambda url: post_json(url, {"image": "***"}), 400, "not valid base64"),
    "form without the image field": (
        lambda url: request(
            url + "predict",
            b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n',
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
        400,
        "no file field 'image'",
    ),
    "GET instead of POST": (
        lambda url: request(url + "predict", method="GET"),
        405,
        "Method Not Allowed",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_one_line_4xx_and_the_server_keeps_serving(
    server: Server, images: list[Path], case: str
) -> None:
    send, status, message = BAD_REQUESTS[case]
    answer = send(server.url)
    assert answer.status == status, answer.body
    detail = answer.body["detail"]
    assert message in detail and "\n" not in detail, detail
    good = post_file(server.url, images[0].read_bytes())
    assert good.status == 200 and good.body["prediction"]


PART = b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
# Malformed bodies written on a raw socket (no client library tidies them up first).
MALFORMED = {
    "multipart without a boundary": (
        b"--x\r\n" + PART + BLANK + b"\r\n--x--\r\n",
        "multipart/form-data",
        None,
    ),
    "a broken boundary": (
        b"--y\r\n" + PART + BLANK + b"\r\n--y--\r\n",
        "multipart/form-data; boundary=x",
        None,
    ),
    "a multipart body cut short": (
        b"--x\r\n" + PART + BLANK[:40],
        "multipart/form-data; boundary=x",
        None,
    ),
    "fewer bytes than Content-Length": (
        b"--x\r\n" + PART,
        "multipart/form-data; boundary=x",
        50_000,
    ),
    "100,000 open brackets": (b"[" * 100_000, "application/json", None),
    '50,000 nested {"a":': (b'{"a":' * 50_000, "application/json", None),
    "a 5,000-digit number": (b'{"image": ' + b"7" * 5_000 + b"}", "application/json", None),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bodies_on_a_raw_socket_get_a_4xx_json_error_never_a_500(
    server: Server, images: list[Path], case: str
) -> None:
    body, content_type, claimed = MALFORMED[case]
    answer = socket_post(server.url, body, content_type, claimed)
    if claimed is None:  # a body cut short by the socket may get no answer: nobody is there
        assert 400 <= answer.status < 500, answer
        assert isinstance(answer.body["detail"], str) and "\n" not in answer.body["detail"]
    good = post_file(server.url, images[0].read_bytes())
    assert good.status == 200 and good.body["prediction"]
    assert "Traceback" not in server.log_tail() and " 500" not in server.log_tail()


def test_a_client_hanging_up_mid_upload_leaves_the_server_serving(
    server: Server, images: list[Path]
) -> None:
    for _ in range(3):
        disconnect_mid_upload(server.url, b"--x\r\n" + PART + BLANK[:100], claimed=200_000)
    good = post_file(server.url, images[0].read_bytes())
    assert good.status == 200 and good.body["prediction"]
    assert "Traceback" not in server.log_tail() and " 500" not in server.log_tail()


def test_200_concurrent_requests_are_all_answered_correctly(
    server: Server, images: list[Path]
) -> None:
    files = [path.read_bytes() for path in images]
    expected = [post_file(server.url, data).body for data in files]
    start = threading.Barrier(200)

    def send(i: int) -> tuple[int, dict]:
        start.wait()
        return i, post_file(server.url, files[i % len(files)]).body

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(send, range(200)))
    assert len(answers) == 200
    for i, body in answers:
        want = expected[i % len(files)]
        assert body["prediction"] == want["prediction"]
        assert body["probability"] == pytest.approx(want["probability"], abs=1e-5)
        assert body["input"] == want["input"]
    # Requests that arrive together are predicted together.
    assert max(body["batch_size"] for _, body in answers) > 1


def _model_file(logs: Path, kind: str) -> Path:
    run = logs / "train" / "runs" / "tiny"
    if kind == "state_dict":
        return run / "character_recognition.torch"
    loaded = load_model(next((run / "checkpoints").glob("epoch*.ckpt")))
    return export_onnx(loaded.card, loaded.model, logs.parent / "model.onnx")


# The state_dict server also runs unbatched (max_batch_size=1: LitServe's other loop).
@pytest.mark.parametrize(
    "kind, batching",
    [("state_dict", "max_batch_size=1"), pytest.param("onnx", "", marks=pytest.mark.slow)],
)
def test_other_model_files_serve_the_same_answers(
    server: Server, logs: Path, images: list[Path], kind: str, batching: str
) -> None:
    model_file = _model_file(logs, kind)
    overrides = [f"ckpt_path={model_file}", *filter(None, [batching])]
    with running_server(*overrides, log=logs.parent / f"server_{kind}.log") as other:
        for path in images[:3]:
            want = post_file(server.url, path.read_bytes()).body
            got = post_file(other.url, path.read_bytes()).body
            assert got["prediction"] == want["prediction"]
            assert got["probability"] == pytest.approx(want["probability"], abs=1e-4)
            assert got["input"] == want["input"]
            if batching:
                assert got["batch_size"] == 1
        info = request(other.url + "info", method="GET").body
        assert info["model"]["model"] == str(model_file.resolve())


@pytest.mark.parametrize(
    "override, message",
    [
        ("host=example.org", "host='example.org' is invalid: it must be one of 127.0.0.1"),
        ("port=80", "port=80 is invalid"),
        ("batch_timeout=-1", "batch_timeout=-1 is invalid"),
        ("batch_timeout=30", "batch_timeout=30 is invalid"),
        ("workers=0", "workers=0 is invalid"),
        ("max_image_mb=0", "max_image_mb=0 is invalid"),
        ("accelerator=cuda", "accelerator=cuda but this machine has no CUDA device"),
        ("port=abc", "port='abc' is invalid: it must be a whole number in [1024, 65535]"),
        ("threads_per_worker=abc", "threads_per_worker='abc' is invalid"),
        ("log_level=bogus", "log_level='bogus' is invalid: it must be one of debug"),
        ("max_megapixels=nan", "max_megapixels=nan is invalid: it must be a finite number"),
        ("corrections_max_mb=0", "corrections_max_mb=0 is invalid"),
    ],
)
def test_settings_the_server_cannot_start_with_are_refused(
    override: str, message: str, tmp_path: Path
) -> None:
    cfg = compose_config("serve", [override], tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("ckpt_path=/nonexistent/model.ckpt",), "does not exist"),
        (("ckpt_path=best", "paths.log_dir=/nonexistent/logs"), "found no checkpoints"),
    ],
    ids=["missing file", "no trained run"],
)
@pytest.mark.slow
def test_serve_stops_at_start_in_one_line(
    overrides: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = run_serve(*overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.slow
def test_a_bad_model_file_or_a_busy_port_stops_serve_in_one_line(
    server: Server, logs: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    result = run_serve(f"ckpt_path={broken}", f"hydra.run.dir={tmp_path / 'a'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {broken}"), lines
    busy = run_serve(
        f"paths.log_dir={logs}", f"port={server.port}", f"hydra.run.dir={tmp_path / 'b'}"
    )
    assert busy.returncode == 2
    lines = busy.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{server.port}" in lines[0], lines


@pytest.mark.slow
def test_load_script_reports_every_level_against_predict_py(server: Server) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/serve_load.py",
            "--url",
            server.url,
            "--requests",
            "12",
            "--concurrency",
            "1",
            "4",
            "--warmup",
            "2",
            "--predict-runs",
            "1",
            "--repeats",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=thread_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| serve.py")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "4"]
    assert all(row.split("|")[-2].strip() == "0" for row in rows)  # no errors
    assert "| predict.py images=<one file>" in result.stdout


def test_metrics_and_the_api_key_are_off_by_default(server: Server, images: list[Path]) -> None:
    assert request(server.url + "metrics", method="GET").status == 404
    assert post_file(server.url, images[0].read_bytes()).status == 200  # no X-API-Key
    log = server.log.read_text()
    assert "needs the header X-API-Key" not in log and "Prometheus metrics" not in log
