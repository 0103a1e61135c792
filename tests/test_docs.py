"""The documentation builds without warnings, and its gallery renders in a real browser."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("numpydoc")
    pytest.importorskip("myst_parser")
    out = tmp_path_factory.mktemp("html")
    doctrees = tmp_path_factory.mktemp("doctrees")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(doctrees), str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_docs_build_with_warnings_as_errors(site):
    for page in ("index.html", "api.html", "map_energy.html", "uncertainty.html",
                 "priors_as_code.html", "auto_examples/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api.html").read_text()
    assert "bayes_restore.denoise" in api and "bayes_restore.restore" in api


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_gallery_page_and_its_figures_render_in_chromium(site):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        try:
            page = browser.new_page()
            page.goto((site / "auto_examples" / "index.html").as_uri())
            page.wait_for_load_state("load")
            thumbs = page.eval_on_selector_all(
                ".sphx-glr-thumbcontainer img",
                "imgs => imgs.map(i => [i.complete, i.naturalWidth])",
            )
            assert thumbs and all(done and width > 0 for done, width in thumbs), thumbs
            page.click(".sphx-glr-thumbcontainer a")
            page.wait_for_load_state("load")
            figures = page.eval_on_selector_all(
                "img.sphx-glr-single-img, img.sphx-glr-multi-img",
                "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])",
            )
            assert figures, "the example page shows no figure"
            assert all(done and w > 100 and h > 100 for done, w, h in figures), figures
            assert "TV" in page.inner_text("body")
        finally:
            browser.close()
