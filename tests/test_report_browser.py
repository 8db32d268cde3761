"""report.html in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

The report is opened from disk (file://, offline), the circuit must render (nodes in the DOM),
the slider must change how many edges are drawn, hovering an edge shows its score and clicking a
node shows its role scores. A screenshot is kept as a test artifact in `test-artifacts/` at the
repository root (or $SUBCIRCUIT_ARTIFACTS); the test prints where. Skipped, with the reason, when
/usr/bin/chromium or the playwright package is missing (CI installs both: .ci/run, the dev extra).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions

CHROMIUM = os.environ.get("SUBCIRCUIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("SUBCIRCUIT_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (install it: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                                 "(pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield b
        b.close()


def visible_edges(page) -> int:
    return page.evaluate("Array.from(document.querySelectorAll('path.edge'))"
                         ".filter(e => getComputedStyle(e).display !== 'none').length")


def test_report_renders_and_responds_in_chromium(browser, tmp_path, capsys):
    folder = tmp_path / "toy"
    circuit = discover("toy-induction-2l", "induction", DiscoverOptions.build(), out=folder)
    n = len(circuit.in_circuit)
    assert n >= 3
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((folder / "report.html").as_uri())

    nodes = page.eval_on_selector_all("g.node", "gs => gs.map(g => g.getAttribute('data-node'))")
    assert {"input", "logits", "a0.h0", "a1.h0"} <= set(nodes)
    assert visible_edges(page) == n

    slider = page.locator("#edge-slider")
    slider.fill("2")  # a range input: sets the value and fires 'input'
    assert visible_edges(page) == 2
    assert "2 of" in page.inner_text("#edge-count")
    slider.fill(str(n))
    assert visible_edges(page) == n

    # hover the strongest edge's stroke: the first point along the curve where it is on top
    x, y = page.evaluate("""() => {
        const e = document.querySelector('path.edge[data-rank="0"]'), m = e.getScreenCTM();
        for (let f = 0.05; f < 1; f += 0.05) {
            const p = e.getPointAtLength(e.getTotalLength() * f);
            const x = p.x * m.a + p.y * m.c + m.e, y = p.x * m.b + p.y * m.d + m.f;
            if (document.elementFromPoint(x, y) === e) { return [x, y]; }
        }
        return [-1, -1];
    }""")
    assert x >= 0, "no visible point on the strongest edge"
    page.mouse.move(x, y)
    tip = page.inner_text("#tooltip")
    assert "score" in tip and page.get_attribute('path.edge[data-rank="0"]', "data-edge") in tip

    page.click('g.node[data-node="a0.h0"]')
    panel = page.inner_text("#node-panel")
    assert "previous-token" in panel and "cut-off" in panel
    page.click('g.node[data-node="a1.h0"]')
    assert "induction" in page.inner_text("#node-panel")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-toy-induction-2l.png"
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():  # shown even without -s
        print(f"\nscreenshot of report.html in Chromium: {shot}")
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    page.close()
