"""Render a run's circuit.svg (or any SVG) to PNG with headless Chromium, for docs/figures.

    python scripts/render_png.py runs/smollm2-ioi-acdc/circuit.svg docs/figures/smollm2-ioi-acdc.png

Needs Debian's `chromium` and the `playwright` package (the dev extra); Playwright drives the
system browser and downloads nothing. The library itself never needs a browser or a display.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("svg", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--scale", type=float, default=1.5, help="device pixels per SVG pixel")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    text = a.svg.read_text()
    m = re.search(r'width="(\d+)" height="(\d+)"', text)
    w, h = (int(m.group(1)), int(m.group(2))) if m else (1200, 900)
    html = f"<!DOCTYPE html><html><body style='margin:0;background:#fff'>{text}</body></html>"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": w, "height": h}, device_scale_factor=a.scale)
        page.set_content(html)
        a.png.parent.mkdir(parents=True, exist_ok=True)
        page.locator("svg").first.screenshot(path=str(a.png))
        browser.close()
    print(f"wrote {a.png} ({w}x{h} at scale {a.scale})")


if __name__ == "__main__":
    main()
