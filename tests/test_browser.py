"""The attention explorer in a real browser: JupyterLab + Debian's chromium, driven by Playwright.

Skipped (with the reason shown) when chromium or playwright is missing. Nothing in the repo changes:
the notebook is copied into a temporary directory that JupyterLab serves.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "08_attention_explorer.ipynb"
CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not importable (pip install playwright)"),
]
TOKEN = "tinytorch-browser-test"
FAILURE_SCREENSHOT = Path(os.environ.get("TMPDIR", "/tmp")) / "tinytorch-browser-failure.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, with isolated settings, serving a copy of the notebook."""
    serve = tmp_path / "serve"
    serve.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, serve / NOTEBOOK)
    home = tmp_path / "home"
    dirs = {name: home / name.lower() for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    dirs["JUPYTERLAB_SETTINGS_DIR"] = home / "lab-settings"
    dirs["JUPYTERLAB_WORKSPACES_DIR"] = home / "lab-workspaces"
    for path in dirs.values():
        path.mkdir(parents=True)
    # the announcements extension would pop up a "news?" notification over the notebook
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir()
    disabled = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
    (labconfig / "page_config.json").write_text(json.dumps(disabled))
    env = {**os.environ, "HOME": str(home), **{name: str(path) for name, path in dirs.items()}}
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={serve}"]
    log = open(tmp_path / "lab.log", "w")  # closed in the teardown
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log_tail = (tmp_path / "lab.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start: {log_tail}") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_explorer_redraws_in_a_real_browser(lab):
    with sync_playwright() as playwright:
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        args += ["--disable-sync", "--no-first-run"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{lab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.locator(".jp-Notebook").wait_for()
            wait_for_idle(page)  # "Run All" sent before the kernel is connected is silently lost
            page.get_by_text("Run", exact=True).first.click()  # the menu bar
            page.get_by_text("Run All Cells", exact=True).click()
            panel = page.locator(".widget-vbox").first  # the first explorer: the untrained model
            image = panel.locator("img.widget-image")
            image.wait_for(timeout=60_000)
            wait_for_idle(page)

            def redraws(action, what: str) -> None:
                before = image.get_attribute("src")
                action()
                try:
                    page.wait_for_function(
                        "([el, before]) => el.getAttribute('src') !== before",
                        arg=[image.element_handle(), before],
                        timeout=15_000,
                    )
                except PlaywrightTimeout:
                    pytest.fail(f"{what} did not redraw the heatmap within 15 s")
                assert image.get_attribute("src") != before, f"{what} did not redraw the heatmap"

            dropdowns = panel.locator(".widget-dropdown select")
            redraws(lambda: dropdowns.nth(0).select_option(label="layer 1"), "the layer dropdown")
            redraws(lambda: dropdowns.nth(1).select_option(label="head 2"), "the head dropdown")
            redraws(lambda: dropdowns.nth(1).select_option(label="all heads"), "the all-heads choice")
            text_box = panel.locator(".widget-text input")

            def type_text():
                text_box.fill("not to be")
                text_box.press("Enter")

            redraws(type_text, "the text box")
            text_box.fill("to be!")  # '!' is unknown: a message, no crash
            text_box.press("Enter")
            panel.get_by_text("is not in the tokenizer's vocabulary").wait_for(timeout=15_000)
        except Exception:
            page.screenshot(path=str(FAILURE_SCREENSHOT))  # what the browser showed, for debugging
            raise
        finally:
            browser.close()


def wait_for_idle(page) -> None:
    """Wait until JupyterLab's status bar reports the kernel Idle (all cells have run)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#jp-main-statusbar'); return s && s.innerText.includes('Idle'); }",
        timeout=60_000,
    )
