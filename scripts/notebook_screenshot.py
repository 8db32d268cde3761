"""The screenshot of a circuit's inline notebook display in docs/ (docs/notebook-display.png).

    PYTHONPATH=src python scripts/notebook_screenshot.py RUN_DIR docs/notebook-display.png

Renders `open_run(RUN_DIR)._repr_html_()` (what Jupyter shows for a run folder or a Circuit) in a
page styled like a notebook output cell and photographs it with headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; never `playwright install`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from subcircuit.runs.notebook import open_run

CHROMIUM = os.environ.get("SUBCIRCUIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def main(run_dir: str, png: str) -> None:
    run = open_run(run_dir)
    page_html = ("<!DOCTYPE html><html><body style='font-family:Helvetica,Arial,sans-serif;margin:16px;"
                 "background:#fff'><div style='color:#555;font:13px monospace;margin-bottom:6px'>"
                 f"In [5]: open_run({run_dir!r})</div>{run._repr_html_()}</body></html>")
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "cell.html"
        page_path.write_text(page_html, encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(page_path.as_uri())
            page.wait_for_timeout(1500)
            page.screenshot(path=png, full_page=True)
            browser.close()
    print(f"wrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
