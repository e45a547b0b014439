"""The LitAPI: batches of prepared 28x28 views -> characters, probabilities and the input seen.

Requests reach it already read, checked and preprocessed by `ingress.py` in the HTTP
processes, so nothing here can fail for one request of a batch: LitServe answers a whole
batch with the error if any of its requests raises.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import signal
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from PIL import Image

from emnist_lightning.inference.predictors import load_predictor, top_k, view_probabilities
from emnist_lightning.inference.preprocess import IMAGE_SIZE, central_view
from emnist_lightning.models.look_alikes import look_alikes_to_offer
from emnist_lightning.serving.lifecycle import Heartbeats, die_with_parent
from emnist_lightning.serving.metrics import BATCH

log = logging.getLogger(__name__)

# The body the ingress hands to LitServe: the preprocessed views (preprocess.load_views) as
# base64 float32 bytes.
INPUT_KEY = "input"
VIEW_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)


def pack_input(views: torch.Tensor) -> dict[str, str]:
    """(V, 1, 28, 28) floats -> a JSON-able payload; exact, so predictions match predict.py's."""
    data = views.to(torch.float32).contiguous().numpy().tobytes()
    return {INPUT_KEY: base64.b64encode(data).decode("ascii")}


def unpack_input(payload: dict[str, Any]) -> torch.Tensor:
    data = base64.b64decode(payload[INPUT_KEY])
    return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy()).view(-1, *VIEW_SHAPE)


def png_base64(image: torch.Tensor) -> str:
    """The model's input as a grayscale PNG (light ink on dark, as EMNIST), base64."""
    pixels = (image.squeeze(0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # uint8 (28, 28): grayscale
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def default_threads(workers: int, api_servers: int) -> int:
    """Share the cores out over inference workers and HTTP processes, at least one each."""
    return max(1, (os.cpu_count() or 1) // (workers + api_servers))


class CharacterAPI(ls.LitAPI):
    """One model per worker process; each batch of waiting requests is one forward pass."""

    def __init__(
        self,
        model_path: Path,
        top_k: int,
        threads: int,
        max_batch_size: int,
        batch_timeout: float,
        parent_pid: int,
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict"
        )
        self.model_path = model_path
        self.top_k = top_k
        self.threads = threads
        self.parent_pid = parent_pid
        self.heartbeats: Heartbeats | None = None  # set by the server once it knows its workers

    def setup(self, device: str) -> None:
        die_with_parent(self.parent_pid)  # a kill -9 of serve.py takes this worker along
        # Ctrl-C reaches the whole process group; the server's main process stops the workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(self.threads)
        self.predictor = load_predictor(self.model_path, device)
        log.info("worker on %s: %s, %d threads", device, self.model_path, self.threads)
        if self.heartbeats is not None:  # beating now says: loaded, and answering
            self.heartbeats.start_beating(int(os.environ.get("LITSERVE_WORKER_ID", "0")))

    def health(self) -> bool:
        """Called in the HTTP processes by /health: every worker has beaten lately."""
        return self.heartbeats is None or self.heartbeats.all_fresh()

    # No annotation on `request` nor on encode_response's result: LitServe turns them into the
    # route's FastAPI request and response types.
    def decode_request(self, request) -> torch.Tensor:
        return unpack_input(request)

    def batch(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        # Requests may have different numbers of views: view_probabilities runs them all in
        # one forward pass and averages each request's own.
        return inputs

    def predict(self, views: torch.Tensor | list[torch.Tensor]) -> Any:
        # With max_batch_size=1 LitServe passes single inputs and expects a single output.
        single = isinstance(views, torch.Tensor)
        batch = [views] if single else views
        probabilities = view_probabilities(self.predictor, batch)
        ranked = top_k(probabilities, self.predictor.class_names, self.top_k)
        if self._logger_queue is not None:  # metrics=true
            self.log(BATCH, len(batch))
        outputs = [
            (central_view(image), best, len(batch))
            for image, best in zip(batch, ranked, strict=True)
        ]
        return outputs[0] if single else outputs

    def unbatch(self, outputs: list[Any]) -> list[Any]:
        return outputs

    def encode_response(self, output: tuple[torch.Tensor, list[tuple[str, float]], int]):
        image, best, batch_size = output
        top = [{"character": char, "probability": prob} for char, prob in best]
        return {
            "prediction": top[0]["character"],
            "probability": top[0]["probability"],
            "top": top,
            # Look-alikes among the top candidates, to put to the user ("O or 0?"); [] if none.
            "look_alikes": look_alikes_to_offer(best, self.predictor.look_alikes),
            "input": png_base64(image),
            "batch_size": batch_size,
        }
