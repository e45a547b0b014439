"""The README's screenshot of the page: an "A" drawn with three mouse strokes.

    python serve.py &            # or make serve
    python docs/serve_screenshot.py --url http://127.0.0.1:8000/ --out docs/images/serve_page.png

Runs Debian's Chromium headless through Playwright (no browser download), as the page test does.
"""

from __future__ import annotations

import argparse

from playwright.sync_api import expect, sync_playwright

# Strokes in fractions of the canvas: the two legs, then the bar.
STROKES = [[(0.25, 0.85), (0.5, 0.15), (0.75, 0.85)], [(0.35, 0.6), (0.65, 0.6)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--out", default="docs/images/serve_page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        page.goto(args.url)
        box = page.locator("#pad").bounding_box()
        for stroke in STROKES:
            points = [
                (box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke
            ]
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point, steps=15)
            page.mouse.up()
        expect(page.locator("#status")).to_contain_text("Your drawing:")
        page.wait_for_timeout(1000)  # the answer to the last stroke
        print(page.inner_text("#status"))
        page.screenshot(path=args.out)
        browser.close()


if __name__ == "__main__":
    main()
