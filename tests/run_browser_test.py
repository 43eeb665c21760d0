"""The attention explorer in a real browser: JupyterLab, headless Debian Chromium, chapter 09 run from the UI.

    python -m tests.run_browser_test            # make test-browser (which also installs chromium and playwright)

Starts JupyterLab on 127.0.0.1 with a random token, serving a copy of the chapter (so Lab's autosave never
touches the committed notebook), opens it in Chromium driven by playwright (no browser download: the
Debian `chromium` package), runs every cell from the Run menu, waits for the kernel to finish, and checks:

1. the explorer widget rendered: ipywidgets' DOM is there, with its picture, and no "Loading widget..." or
   "Error displaying widget" text;
2. moving the layer slider with the keyboard changes the slider's value and the picture.

Screenshots go to runs/browser/ (ignored). The server is stopped by the PID this script started.
Not a pytest file on purpose: it needs apt's chromium and takes a minute, so `make test` does not run it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "notebooks/09_looking_inside.ipynb"
OUT = REPO / "runs" / "browser"
BLOCKING_TEXTS = ("Loading widget", "Error displaying widget")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_copy() -> Path:
    """A folder holding a copy of the chapter (it reads everything else from the installed package)."""
    root = OUT / "root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / CHAPTER, root / CHAPTER)
    return root


def lab_settings(folder: Path) -> Path:
    """Lab settings for the test: no autosave, no news, no update check (the machine may be offline)."""
    overrides = {
        "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        path = folder / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


def start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(lab_settings(OUT / "settings")),
               JUPYTERLAB_WORKSPACES_DIR=str(OUT / "workspaces"), JUPYTER_RUNTIME_DIR=str(OUT / "runtime"),
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url="]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root without it (containers, CI)
    log = open(OUT / "lab.log", "w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_server(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {server.returncode}; see {OUT / 'lab.log'}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {seconds:.0f} s; see {OUT / 'lab.log'}")


def wait_for_kernel_start(base: str, token: str, seconds: float = 120) -> None:
    """Until the notebook's kernel is up and idle (asked through the server's REST API)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as response:
            sessions = json.load(response)
        if any(session["kernel"]["execution_state"] == "idle" for session in sessions):
            return
        time.sleep(1)
    raise TimeoutError(f"no idle kernel after {seconds:.0f} s")


def close_popups(page) -> None:
    """Lab's first-run toasts ("receive official Jupyter news?"): answer No so they do not cover the page."""
    for button in page.locator(".jp-toast-button, .Toastify__toast button").all():
        if button.is_visible() and button.inner_text().strip() in ("No", "Dismiss"):
            button.click()


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()


def wait_for_kernel(page, seconds: float = 240) -> None:
    """Until every code cell shows an execution count and none shows [*] (queued or running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()  # also off-screen cells
        done = [p for p in prompts if any(ch.isdigit() for ch in p)]
        if prompts and len(done) == len(prompts) and not any("*" in p for p in prompts):
            return
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        if errors.count():  # Run All stops at the first error: report it instead of waiting
            raise AssertionError(f"a cell raised:\n{errors.first.text_content()[-2000:]}")
        close_popups(page)
        time.sleep(1)
    raise TimeoutError(f"the notebook did not finish within {seconds:.0f} s; prompts: {prompts}")


def picture_after(explorer, before: bytes, seconds: float = 60) -> bytes:
    """The explorer's picture, once it differs from `before` (the kernel redraws it, the browser shows it)."""
    image = explorer.locator("img").first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = image.screenshot()
        if now != before:
            return now
        time.sleep(0.5)
    raise AssertionError("the explorer's picture did not change after the layer changed")


def check_explorer(page) -> None:
    output = page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-vbox")).first
    output.scroll_into_view_if_needed()
    text = output.inner_text()
    for blocking in BLOCKING_TEXTS:
        assert blocking not in text, f"the explorer shows {blocking!r} instead of the widget"
    explorer = output.locator(".widget-vbox").first
    sliders = explorer.locator(".widget-slider")
    assert sliders.count() == 2, f"expected the layer and head sliders, found {sliders.count()}"
    assert explorer.locator("img").count() == 1, "the explorer's picture is missing"
    page.screenshot(path=str(OUT / "lab.png"))
    explorer.screenshot(path=str(OUT / "explorer.png"))
    before = explorer.locator("img").first.screenshot()
    layer_readout = sliders.first.locator(".widget-readout")
    layer_before = layer_readout.inner_text().strip()
    handle = sliders.first.locator(".noUi-handle, .ui-slider-handle").first  # ipywidgets 8, or 7
    handle.focus()
    page.keyboard.press("ArrowRight" if layer_before == "0" else "ArrowLeft")
    picture_after(explorer, before)
    layer_after = layer_readout.inner_text().strip()
    assert layer_after != layer_before, f"the layer slider still reads {layer_before}"
    explorer.screenshot(path=str(OUT / "explorer_after.png"))
    print(f"explorer rendered; layer {layer_before} -> {layer_after} changed the picture")


def main() -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium (make test-browser does it)")
    OUT.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    server = start_lab(served_copy(), port, token)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(f"{base}/lab/tree/{CHAPTER}?token={token}", timeout=120_000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            wait_for_kernel_start(base, token)
            try:
                close_popups(page)
                run_all_cells(page)
                wait_for_kernel(page)
                close_popups(page)
                check_explorer(page)
            finally:
                page.screenshot(path=str(OUT / "final.png"))  # what the page showed, passed or failed
                browser.close()
    finally:
        server.terminate()  # the PID this script started, nothing else
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"browser test passed; screenshots in {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
