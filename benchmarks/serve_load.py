"""Load on a running serve.py: requests/s and latency for 1..N clients, against predict.py.

    python serve.py &                                    # the server under test
    python benchmarks/serve_load.py --url http://127.0.0.1:8000/ --requests 2000 \\
        --concurrency 1 4 16 64

Each level sends exactly --requests POST /predict requests (multipart uploads of the same few
character images) from that many client threads, each on its own keep-alive connection, and
reports requests/s, p50/p95 latency, the mean number of requests the server predicted
together (`batch_size` in the answers) and any non-200 answer. For comparison it times the
same model without the server: `predict.py images=<one file>` as a new process per image (what
a user pays today), and one image preprocessed + predicted in an already-loaded process.
The client runs on the same machine as the server and shares its cores: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from predict_latency import measure  # benchmarks/ is this script's folder

REPO = Path(__file__).resolve().parents[1]


def sample_images(folder: Path, characters: str = "A7Rb3") -> list[Path]:
    """Characters as a user's photos might look: dark ink on light paper, off-centre."""
    paths = []
    for i, char in enumerate(characters):
        image = Image.new("L", (240, 180), 245)
        font = ImageFont.load_default(size=100 + 8 * i)
        ImageDraw.Draw(image).text((40 + 10 * i, 15), char, fill=10, font=font)
        path = folder / f"sample_{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def multipart_body(data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_level(url: str, bodies: list[tuple[bytes, str]], requests: int, clients: int) -> dict:
    """Exactly `requests` requests from `clients` threads; latency of each, wall time of all."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/predict"
    lock = threading.Lock()
    next_index = 0
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: list[str] = []
    start_all = threading.Barrier(clients + 1)

    def client() -> None:
        nonlocal next_index
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        start_all.wait()
        while True:
            with lock:
                if next_index >= requests:
                    break
                index = next_index
                next_index += 1
            body, content_type = bodies[index % len(bodies)]
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": content_type})
                response = connection.getresponse()
                raw = response.read()
                elapsed = time.perf_counter() - started
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                with lock:
                    errors.append(type(exc).__name__)
                continue
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    batch_sizes.append(json.loads(raw)["batch_size"])
                else:
                    errors.append(str(status))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_all.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "errors": len(errors),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else float("nan"),
        "p95_ms": 1000 * percentile(latencies, 0.95) if latencies else float("nan"),
        "mean_batch": statistics.fmean(batch_sizes) if batch_sizes else float("nan"),
    }


def served_model(url: str) -> Path:
    with urllib.request.urlopen(url + "info", timeout=10) as response:
        return Path(json.loads(response.read())["model"]["model"])


def time_predict_cli(model: Path, image: Path, runs: int, out: Path) -> list[float]:
    """Wall time of `python predict.py images=<one file>`: start-up, load, one prediction."""
    times = []
    for run in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(REPO / "predict.py"),
                f"ckpt_path={model}",
                f"images=[{image}]",
                f"hydra.run.dir={out / str(run)}",
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the running server")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--warmup", type=int, default=20, help="requests sent before measuring")
    parser.add_argument("--images", type=Path, nargs="*", help="image files (default: samples)")
    parser.add_argument(
        "--predict-runs", type=int, default=5, help="predict.py runs to time (0: skip)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="in-process images (0: skip)")
    args = parser.parse_args()
    url = args.url if args.url.endswith("/") else args.url + "/"
    if args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--requests and --concurrency must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        images = args.images or sample_images(Path(tmp))
        bodies = [multipart_body(path.read_bytes(), path.name) for path in images]
        model = served_model(url)
        print(f"server: {url}  model: {model}  images: {len(images)}")
        run_level(url, bodies, args.warmup, 1)
        rows = [run_level(url, bodies, args.requests, c) for c in args.concurrency]
        cli = time_predict_cli(model, images[0], args.predict_runs, Path(tmp) / "predict")
        in_process = measure(model, args.repeats, batch_size=256) if args.repeats else None

    print(
        "\n| how | clients | requests | requests/s | p50 latency | p95 latency | mean batch | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| serve.py, POST /predict | {row['clients']} | {row['requests']} "
            f"| {row['requests_per_s']:,.0f} | {row['p50_ms']:.1f} ms | {row['p95_ms']:.1f} ms "
            f"| {row['mean_batch']:.1f} | {row['errors']} |"
        )
    if cli:
        print(
            f"| predict.py images=<one file>, a new process per image | 1 | {len(cli)} "
            f"| {1 / statistics.median(cli):.2f} | {1000 * statistics.median(cli):,.0f} ms "
            f"| {1000 * percentile(cli, 0.95):,.0f} ms | 1 | 0 |"
        )
    if in_process:
        print(
            f"| in an already-loaded process: read + preprocess + forward | 1 | {args.repeats} "
            f"| {1000 / in_process['latency_ms']:,.0f} | {in_process['latency_ms']:.2f} ms "
            "| | 1 | 0 |"
        )
    if any(row["errors"] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
