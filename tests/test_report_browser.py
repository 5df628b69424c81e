"""The HTML report in a real headless browser (Debian's chromium via Playwright), and escaping of config names."""

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from genbench.report.build import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _need_browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("GENBENCH_REQUIRE_BROWSER"):
            raise
        pytest.skip("playwright is not installed (make test installs it)")
    if not Path(CHROMIUM).exists():
        if os.environ.get("GENBENCH_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} missing: make test installs Debian's chromium")
        pytest.skip("chromium is not installed (make test installs it)")


@pytest.fixture()
def served(smoke_study):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(smoke_study))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(smoke_study, served):
    """At a desktop and a narrow width: no console errors, every image loaded, the interactive plots drawn inside
    the page's width (no clipped plot, no sideways scroll), a table of contents and a sortable table."""
    _need_browser()
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader"])
        for width, height in ((1280, 900), (420, 900)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{served}/report/index.html", wait_until="load")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30000)
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
            assert len(images) >= 10 and all(w > 0 for _, w in images), images
            plots = page.eval_on_selector_all(
                ".js-plotly-plot", "els => els.map(e => [e.getBoundingClientRect().left, "
                "e.getBoundingClientRect().right, e.parentElement.getBoundingClientRect().right])")
            assert len(plots) == 2, plots
            for left, right, parent_right in plots:
                assert left >= -1 and right <= width + 1 and right <= parent_right + 1, (width, plots)
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
            assert page.locator("nav a[href='#quality']").count() == 1
            first = page.locator("table.sortable tr:nth-child(2) td").first.inner_text()
            page.locator("table.sortable th").nth(2).click()  # sort by FID
            page.locator("table.sortable th").nth(2).click()
            assert page.locator("table.sortable tr").count() >= 6 and first
            shot = smoke_study / "report" / f"screenshot_{width}.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.read_bytes()[:4] == b"\x89PNG"
            page.close()
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{served}/report/figures/interactive.html", wait_until="load")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30000)
        browser.close()
    assert not errors, errors


@pytest.mark.slow
def test_names_from_configs_are_escaped(smoke_study, tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    d = tmp_path / "study"
    d.mkdir()
    summary = json.loads((smoke_study / "metrics.json").read_text())
    summary["study"] = evil
    summary["models"][0]["model"] = evil + "m"
    (d / "metrics.json").write_text(json.dumps(summary))
    html = build_report(d).read_text()
    inter = (d / "report" / "figures" / "interactive.html").read_text()
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert evil not in inter
