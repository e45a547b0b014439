"""The page shows what the served model is: its classes and its top-k, read from GET /info."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.browser import launched_chromium
from helpers.configs import compose_config
from helpers.emnist_fixtures import write_emnist_fixture
from helpers.rendered_chars import render_character
from helpers.serving_process import Server, post_file, request, running_server

from emnist_lightning.data.labels import SPLITS
from emnist_lightning.training.run import train


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits model (10 classes), trained one short epoch on the tiny fixture."""
    root = tmp_path_factory.mktemp("digits")
    data = write_emnist_fixture(root / "data", split="digits")
    cfg = compose_config(
        "train",
        [
            f"data.data_dir={data}",
            "data.download=false",
            "data.split=digits",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "++callbacks.progress_bar=null",
            "test=false",
            "logger=none",
        ],
        root / "run",
    )
    train(cfg)
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def server(digits_model: Path) -> Iterator[Server]:
    log = digits_model.parents[2] / "server.log"
    with running_server(f"ckpt_path={digits_model}", "top_k=3", log=log) as server:
        yield server


@pytest.mark.slow
def test_info_names_the_classes_and_top_k_the_answers_use(server: Server, tmp_path: Path) -> None:
    model = request(server.url + "info", method="GET").body["model"]
    assert model["classes"] == list("0123456789") and model["top_k"] == 3
    image = render_character("7", tmp_path / "seven.png", font_size=80)
    answer = post_file(server.url, image.read_bytes()).body
    assert len(answer["top"]) == model["top_k"]


def _sentence(page, classes: list[str]) -> str:
    return page.evaluate(
        "(classes) => classSentence(classes)"
        ".map((x) => (typeof x === 'string' ? x : x.textContent)).join('')",
        classes,
    )


def test_the_page_shows_the_served_models_classes_and_top_k(server: Server) -> None:
    from playwright.sync_api import expect

    with launched_chromium() as browser:
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#top-title")).to_have_text("Top 3", timeout=30_000)
        expect(page.locator("header p")).to_have_text(
            "A digit. The model reads it when you pause after a stroke."
        )
        # Other models' classes, described by the same code the header uses.
        splits = {name: list(info.characters) for name, info in SPLITS.items()}
        assert _sentence(page, splits["balanced"]) == (
            "A digit, a capital letter or one of a b d e f g h n q r t"
        )
        assert _sentence(page, splits["byclass"]) == ("A digit, a capital letter or a small letter")
        assert _sentence(page, splits["letters"]) == "A letter"
        assert _sentence(page, ["+", "-", *"0123456789"]) == "A digit or one of + -"
