"""The attention explorer and the sampling playground in a real browser: JupyterLab, Debian's chromium, Playwright.

Skipped (with the reason shown) when chromium or playwright is missing. Nothing in the repo changes:
the notebook is copied into a temporary directory that JupyterLab serves, with one cell added at its end (RAMP).
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

import nbformat
import pytest

from tinytorch.checkpoint import PRETRAINED, load_checkpoint

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
RAMP_CAPTION = "the shading at every weight"
# the cell added to the copy: the explorer's text view with one character at every weight from 0 to 1, by 0.001
RAMP = (
    "from tinytorch.viz import AttentionView\n"
    f"AttentionView(chars=['W'] * 1001, row=[i / 1000 for i in range(1001)], caption={RAMP_CAPTION!r})"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, with isolated settings, serving a copy of the notebook."""
    serve = tmp_path / "serve"
    serve.mkdir()
    notebook = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(RAMP))
    nbformat.write(notebook, serve / NOTEBOOK)
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


SCREENSHOTS = Path(os.environ.get("TMPDIR", "/tmp")) / "tinytorch-browser"
FONT_SIZES = """(root) => Array.from(root.querySelectorAll('.tt-char, .tt-label, .tt-caption, .tt-bar-label'))
    .filter((el) => el.getClientRects().length > 0)
    .map((el) => parseFloat(getComputedStyle(el).fontSize) * el.getBoundingClientRect().height / el.offsetHeight)"""


CONTRASTS = """(root) => {
    const channels = (css) => css.match(/[\\d.]+/g).map(Number);  // "rgb(r, g, b)" or "rgba(r, g, b, a)"
    const linear = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    const weights = [0.2126, 0.7152, 0.0722];  // WCAG 2's relative luminance
    const luminance = (css) => channels(css).slice(0, 3).reduce((sum, c, i) => sum + weights[i] * linear(c / 255), 0);
    return Array.from(root.querySelectorAll('.tt-char')).map((el) => {
      const style = getComputedStyle(el), text = luminance(style.color), back = luminance(style.backgroundColor);
      const opaque = (channels(style.color)[3] ?? 1) === 1 && (channels(style.backgroundColor)[3] ?? 1) === 1;
      const ratio = (Math.max(text, back) + 0.05) / (Math.min(text, back) + 0.05);
      return {ratio, opaque, color: style.color, background: style.backgroundColor, title: el.title};
    });
  }"""


def assert_shading_readable(view, where: str) -> int:
    """Every shaded character of the view has WCAG AA contrast (4.5:1) with its shade; returns how many were checked."""
    chars = view.evaluate(CONTRASTS)
    assert chars, f"{where}: no shaded characters"
    assert all(char["opaque"] for char in chars), f"{where}: a character's colour or shade is transparent"
    low = [char for char in chars if char["ratio"] < 4.5]
    if low:
        worst = min(low, key=lambda char: char["ratio"])
        pytest.fail(
            f"{where}: {len(low)} of {len(chars)} characters are under WCAG AA's 4.5:1, the lowest "
            f"{worst['ratio']:.2f}:1 ({worst['color']} on {worst['background']}, {worst['title']})"
        )
    return len(chars)


def smallest_label_pt(panel) -> float:
    """The smallest font of the view's labels and characters, as rendered, in points (1 pt = 4/3 px)."""
    sizes = panel.evaluate(FONT_SIZES)
    assert sizes, "the view shows no labels"
    return min(sizes) * 0.75


def fill_and_leave(textarea, text: str) -> None:
    """Type into a text box that reports on blur (continuous_update=False), then leave it."""
    textarea.fill(text)
    textarea.press("Tab")


def set_slider(panel, index: int, value) -> None:
    """Type a value into the readout of the panel's index-th slider."""
    readout = panel.locator(".widget-readout").nth(index)
    readout.click()
    readout.press("Control+a")
    readout.type(str(value))
    readout.press("Enter")


def changes(page, element, action, what: str) -> None:
    """Run action and wait until element's HTML changes."""
    before = element.inner_html()
    action()
    try:
        page.wait_for_function("([el, before]) => el.innerHTML !== before", arg=[element.element_handle(), before])
    except PlaywrightTimeout:
        pytest.fail(f"{what} did not change the view within 30 s")


def test_explorer_and_playground_in_a_real_browser(lab, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
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
            page.locator(".tt-bars").first.wait_for(timeout=90_000)  # the playground: the last widget
            wait_for_idle(page)

            # the text view at every weight from 0 to 1 (the cell added to the copy): readable on every shade
            ramp = page.locator(".tt-attention", has_text=RAMP_CAPTION)
            assert assert_shading_readable(ramp, "the text view at every weight") == 1001

            # the untrained explorer: a click selects the query, the layer changes the shading
            tiny = page.locator(".widget-vbox", has=page.locator(".tt-attention")).first
            view = tiny.locator(".tt-attention")
            chars = view.locator(".tt-char")
            assert chars.count() == len("to be or not to be")
            changes(page, view, lambda: chars.nth(3).click(), "a click on a character")
            assert view.locator(".tt-query").first.inner_text() == "b"
            assert tiny.locator(".widget-readout").first.inner_text().strip() == "3"  # the query slider followed
            changes(page, view, lambda: tiny.locator("select").nth(0).select_option(label="layer 1"), "the layer menu")
            changes(page, view, lambda: tiny.locator("select").nth(1).select_option(label="all heads (max)"), "max")
            box = tiny.locator("textarea")
            fill_and_leave(box, "to be!")  # '!' is unknown: a message that wraps, no crash
            message = tiny.get_by_text("is not in the tokenizer's vocabulary")
            message.wait_for()
            inside = message.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1")
            assert inside, "the message is cut off instead of wrapping"

            # the trained explorer: a typed newline is kept; labels stay readable at any length
            trained = page.locator(".widget-vbox", has=page.locator(".tt-attention")).nth(1)
            view = trained.locator(".tt-attention")
            changes(page, view, lambda: fill_and_leave(trained.locator("textarea"), "ROMEO:\nO Juliet"), "a newline")
            assert view.locator(".tt-char").count() == len("ROMEO:\nO Juliet")
            assert view.locator(".tt-text br").count() == 1 and "⏎" in view.locator(".tt-text").inner_text()
            speech = (
                "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
            )
            block = load_checkpoint(PRETRAINED).model.config.block_size  # the most the trained explorer shows
            for length in (48, block, 1000):
                text = (speech * 12)[:length]
                changes(page, view, lambda t=text: fill_and_leave(trained.locator("textarea"), t), f"{length} chars")
                shown = view.locator(".tt-char").count()
                assert shown == min(length, block), f"{length} characters: {shown} shown"
                assert_shading_readable(view, f"the trained explorer at {length} characters")
                smallest = smallest_label_pt(view)
                assert smallest >= 9, f"at {length} characters a label is {smallest:.1f} pt, under 9 pt"
                if length == 1000:
                    assert trained.get_by_text(f"showing the last {block} characters").count() == 1
                    trained.screenshot(path=str(shots / "explorer-1000-characters.png"))

            # the playground: every control changes the chart; a sample appends a character
            playground = page.locator(".widget-vbox", has=page.locator(".tt-bars")).first
            chart = playground.locator(".tt-chart")
            knobs = [(3, 1.5, "penalty"), (0, 0.5, "temperature"), (1, 3, "top-k"), (2, 0.2, "top-p")]
            for index, value, name in knobs:  # each on top of the ones before it, and each still changes the chart
                changes(page, chart, lambda i=index, v=value: set_slider(playground, i, v), f"the {name} slider")
            assert chart.locator(".tt-dropped").count() >= chart.locator(".tt-column").count() - 3  # top-k 3
            assert smallest_label_pt(playground) >= 9
            prompt = playground.locator("textarea")
            before = prompt.input_value()
            playground.get_by_text("sample one character").click()
            page.wait_for_function("([el, n]) => el.value.length === n + 1", arg=[prompt.element_handle(), len(before)])
            assert prompt.input_value().startswith(before)
            playground.screenshot(path=str(shots / "playground.png"))
        except Exception:
            page.screenshot(path=str(FAILURE_SCREENSHOT))  # what the browser showed, for debugging
            raise
        finally:
            browser.close()
    SCREENSHOTS.mkdir(exist_ok=True)
    for shot in shots.iterdir():  # a copy outside pytest's temporary folders, which are cleaned up later
        shutil.copy(shot, SCREENSHOTS / shot.name)


def wait_for_idle(page) -> None:
    """Wait until JupyterLab's status bar reports the kernel Idle (all cells have run)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#jp-main-statusbar'); return s && s.innerText.includes('Idle'); }",
        timeout=60_000,
    )
