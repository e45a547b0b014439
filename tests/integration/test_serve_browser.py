"""The page at / in real headless Chromium: draw with mouse and touch, clear, upload a photo,
undo a stroke, one reading per multi-stroke character, the look-alike question, and a
correction stored by the server and used by a fine-tuning run.

Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through Playwright; no browser is
downloaded. The model is trained 300 steps on the proxy handwriting, so a drawn bar reads as
a one. Set SERVE_SCREENSHOT=<file.png> to keep the screenshot (the README's comes from here).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import launched_chromium
from helpers.rendered_chars import render_character
from helpers.serving_process import Server, post_file, running_server

pytestmark = pytest.mark.proxy

# A vertical bar: "1", "I", or lowercase l, which EMNIST balanced files under class "L".
BAR_READINGS = {"1", "I", "L"}
DASH = "\u2013"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def corrections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corrections") / "saved"


@pytest.fixture(scope="module")
def server(
    proxy_trained_run: Path, corrections: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("browser_server") / "server.log"
    model = proxy_trained_run / "checkpoints" / "last.ckpt"
    with running_server(f"ckpt_path={model}", f"corrections_dir={corrections}", log=log) as server:
        yield server


def _open(browser, server: Server, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    # The page must work under its own Content-Security-Policy (no inline code, nothing remote).
    page.on("console", lambda message: _fail_on_policy_violation(message.text))
    page.goto(server.url)
    page.wait_for_selector("#pad")
    return context, page, requested


def _fail_on_policy_violation(text: str) -> None:
    assert "Content Security Policy" not in text, text


def _draw_bar_with_mouse(page) -> None:
    _stroke(page, (0.5, 0.15), (0.5, 0.85))


def _stroke(page, *points: tuple[float, float]) -> None:
    """One mouse stroke through `points`, given as fractions of the canvas."""
    box = page.locator("#pad").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=20)
    page.mouse.up()


def _draw_bar_with_touch(page) -> None:
    """A finger stroke, as a phone's touch screen sends it (Chromium's DevTools protocol)."""
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    cdp = page.context.new_cdp_session(page)
    ys = [box["y"] + box["height"] * (0.15 + 0.7 * i / 20) for i in range(21)]
    cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]}
    )
    for y in ys[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _wait_for_prediction(page) -> str:
    from playwright.sync_api import expect

    expect(page.locator("#prediction")).not_to_have_text(DASH, timeout=30_000)
    return page.inner_text("#prediction")


def _canvas_is_blank(page) -> bool:
    return page.evaluate(
        """() => {
            const pad = document.getElementById('pad');
            const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
            return data.every((value) => value === 255);
        }"""
    )


def _assert_cleared(page) -> None:
    assert page.inner_text("#prediction") == DASH
    assert page.locator("#top li").count() == 0
    assert page.locator("#input").is_hidden()
    assert _canvas_is_blank(page)


def test_a_drawn_bar_is_read_shown_and_cleared(browser, server: Server, tmp_path: Path) -> None:
    context, page, requested = _open(browser, server, viewport={"width": 1000, "height": 720})
    _draw_bar_with_mouse(page)
    reading = _wait_for_prediction(page)
    assert reading in BAR_READINGS
    assert page.locator("#top li").count() == 5
    assert page.inner_text("#status").startswith(f"Your drawing: {reading} (")
    preview = page.locator("#input")
    assert preview.is_visible()
    assert preview.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.getElementById('input').naturalWidth") == 28
    screenshot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert len(screenshot) > 10_000
    if os.environ.get("SERVE_SCREENSHOT"):
        shutil.copy(tmp_path / "page.png", os.environ["SERVE_SCREENSHOT"])

    page.click("#clear")
    _assert_cleared(page)

    # The keyboard reaches the controls: Tab to "Clear" and press Enter; Escape clears too.
    _draw_bar_with_mouse(page)
    _wait_for_prediction(page)
    for _ in range(10):
        if page.evaluate("document.activeElement.id") == "clear":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "clear"
    page.keyboard.press("Enter")
    _assert_cleared(page)
    _draw_bar_with_mouse(page)
    _wait_for_prediction(page)
    page.keyboard.press("Escape")
    _assert_cleared(page)

    # Everything came from the server itself (works offline, no CDN).
    assert requested and all(
        url.startswith(server.url) or url.startswith("data:") for url in requested
    )
    context.close()


def test_an_uploaded_photo_gets_the_api_answer(browser, server: Server, tmp_path: Path) -> None:
    photo = render_character("7", tmp_path / "seven.png", font_size=110, canvas=(300, 240))
    context, page, _ = _open(browser, server)
    page.set_input_files("#file", str(photo))
    expected = post_file(server.url, photo.read_bytes()).body
    assert _wait_for_prediction(page) == expected["prediction"]
    assert page.inner_text("#status").startswith(f"seven.png: {expected['prediction']} (")
    context.close()


def test_the_page_fits_a_phone_and_reads_a_finger_stroke(browser, server: Server) -> None:
    context, page, _ = _open(
        browser,
        server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#pad").bounding_box()
    assert 250 <= box["width"] <= 390 and box["x"] >= 0
    _draw_bar_with_touch(page)
    assert _wait_for_prediction(page) in BAR_READINGS
    assert page.locator("#top li").count() == 5
    context.close()


def _canvas_pixels(page) -> list[int]:
    return page.evaluate(
        """() => {
            const pad = document.getElementById('pad');
            return Array.from(pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data);
        }"""
    )


def _predict_requests(page) -> list[str]:
    requests: list[str] = []
    page.on(
        "request",
        lambda r: requests.append(r.url) if r.url.endswith("/predict") else None,
    )
    return requests


@pytest.mark.slow
def test_undo_removes_the_last_stroke_and_reads_the_rest_again(browser, server: Server) -> None:
    from playwright.sync_api import expect

    context, page, _ = _open(browser, server)
    _draw_bar_with_mouse(page)
    first = _wait_for_prediction(page)
    one_stroke = _canvas_pixels(page)
    _stroke(page, (0.25, 0.15), (0.75, 0.15))  # a T now
    expect(page.locator("#status")).to_contain_text("(", timeout=30_000)
    assert _canvas_pixels(page) != one_stroke

    page.click("#undo")
    assert _canvas_pixels(page) == one_stroke  # redrawn from the strokes kept, exactly
    assert _wait_for_prediction(page) == first
    page.keyboard.press("Control+z")  # the keyboard shortcut undoes too
    _assert_cleared(page)
    assert page.locator("#undo").is_disabled()
    context.close()


def test_a_two_stroke_character_is_read_once_not_after_its_first_stroke(
    browser, server: Server
) -> None:
    context, page, _ = _open(browser, server)
    requests = _predict_requests(page)
    _stroke(page, (0.5, 0.15), (0.5, 0.85))
    time.sleep(0.2)  # lifting the pen between the strokes of a T
    _stroke(page, (0.25, 0.15), (0.75, 0.15))
    _wait_for_prediction(page)
    time.sleep(0.6)
    assert len(requests) == 1, requests
    context.close()


def test_look_alikes_among_the_top_answers_are_put_as_a_question(
    browser, server: Server, proxy_trained_run: Path
) -> None:
    card = json.loads((proxy_trained_run / "model_card.json").read_text())
    assert {frozenset(p) for p in card["look_alikes"]} & {frozenset("0O"), frozenset("1I")}
    context, page, _ = _open(browser, server)
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
        _draw_bar_with_mouse(page)
    offered = answer.value.json()["look_alikes"]
    assert len(offered) >= 2, answer.value.json()
    _wait_for_prediction(page)
    question = page.locator("#ask-question")
    assert question.is_visible()
    assert question.inner_text() == (
        ", ".join(f"\u201c{c}\u201d" for c in offered[:-1]) + f" or \u201c{offered[-1]}\u201d?"
    )
    choices = page.locator("#ask-choices button")
    assert choices.all_inner_texts() == offered
    choices.nth(1).click()
    assert page.inner_text("#prediction") == offered[1]
    assert choices.nth(1).get_attribute("aria-pressed") == "true"
    assert page.input_value("#truth") == offered[1]  # ready to be saved as a correction
    page.click("#clear")
    assert page.locator("#ask").is_hidden()
    context.close()


def test_a_saved_correction_is_stored_and_fine_tunes_a_model(
    browser, server: Server, corrections: Path, proxy_trained_run: Path, make_train_cfg
) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    from emnist_lightning.training.run import build_run, train

    context, page, _ = _open(browser, server)
    assert list(corrections.glob("*.json")) == []  # nothing stored without the click
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
        _draw_bar_with_mouse(page)
    seen = answer.value.json()["input"]
    _wait_for_prediction(page)
    assert list(corrections.glob("*.json")) == []
    page.fill("#truth", "7")
    page.click("#correct button[type=submit]")
    expect(page.locator("#status")).to_have_text(re.compile("^Saved as 7"), timeout=30_000)
    (record,) = corrections.glob("*.json")
    saved = json.loads(record.read_text())
    assert saved["character"] == "7"
    (stroke,) = saved["strokes"]
    assert len(stroke) > 10 and all(len(p) == 2 for p in stroke)
    stored = Image.open(record.with_suffix(".png"))
    seen_pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(seen))))
    assert np.array_equal(np.asarray(stored), seen_pixels)
    assert Image.open(record.with_name(record.stem + ".drawing.png")).size == (280, 280)
    context.close()

    # A fine-tune from the served model on EMNIST plus that correction.
    base = proxy_trained_run / "checkpoints" / "last.ckpt"
    overrides = (
        "model=bn_cnn",
        "model.net.widths=[16,32]",
        f"init_from={base}",
        f"data.extra=[{corrections}]",
        "data.extra_repeat=2",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
    )
    run = build_run(make_train_cfg(*overrides))
    run.datamodule.setup("fit")
    images, labels = run.datamodule._train
    assert [
        run.datamodule.characters[int(labels[i])] for i in run.datamodule.train_indices[-2:]
    ] == ["7", "7"]
    assert np.array_equal(images[-1][0].numpy(), np.asarray(stored))
    metrics = train(make_train_cfg(*overrides))
    assert metrics["epochs"] == 1


@pytest.mark.slow
def test_the_page_asks_for_the_api_key_a_server_needs_and_sends_it(
    browser, proxy_trained_run: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    key = "k3y-for-this-test"
    model = proxy_trained_run / "checkpoints" / "last.ckpt"
    with running_server(
        f"ckpt_path={model}", log=tmp_path / "server.log", env={"LIT_SERVER_API_KEY": key}
    ) as keyed:
        context, page, _ = _open(browser, keyed)
        sent_keys: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                sent_keys.append(r.headers.get("x-api-key")) if r.url.endswith("/predict") else None
            ),
        )
        status = page.locator("#status")
        expect(status).to_contain_text("needs an API key", timeout=30_000)
        assert page.locator("#key").is_visible()

        page.fill("#api-key", "wrong")
        page.click("#key button[type=submit]")
        expect(status).to_contain_text("That API key was refused.", timeout=30_000)
        assert page.locator("#key").is_visible()

        page.fill("#api-key", key)
        page.click("#key button[type=submit]")
        assert page.locator("#key").is_hidden()
        _draw_bar_with_mouse(page)
        assert _wait_for_prediction(page) in BAR_READINGS
        assert sent_keys and set(sent_keys) == {key}
        expect(page.locator("#top-title")).to_have_text("Top 5")  # /info read with the key

        # Kept for the tab: a reload reads /info and predicts without asking again.
        page.reload()
        expect(page.locator("#top-title")).to_have_text("Top 5", timeout=30_000)
        assert page.locator("#key").is_hidden()
        _draw_bar_with_mouse(page)
        assert _wait_for_prediction(page) in BAR_READINGS
        context.close()
