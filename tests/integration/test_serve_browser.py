"""The page at / in real headless Chromium: draw with mouse and touch, clear, upload a photo.

Uses Debian's Chromium (/usr/bin/chromium, or $CHROMIUM) through Playwright; no browser is
downloaded. The model is trained 300 steps on the proxy handwriting, so a drawn bar reads as
a one. Set SERVE_SCREENSHOT=<file.png> to keep the screenshot (the README's comes from here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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
def server(proxy_trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("browser_server") / "server.log"
    model = proxy_trained_run / "checkpoints" / "last.ckpt"
    with running_server(f"ckpt_path={model}", log=log) as server:
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
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 0.15 * box["height"])
    page.mouse.down()
    page.mouse.move(x, box["y"] + 0.85 * box["height"], steps=20)
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
