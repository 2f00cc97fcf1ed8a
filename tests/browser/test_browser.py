"""The course as a student meets it: JupyterLab in a real (headless) Chromium.

Run with ``make test-browser`` (it installs Debian's chromium and Playwright
when missing). JupyterLab serves a throw-away copy of the course, in FAST mode,
on a free localhost port. The test:

- opens a student notebook and finds nbgrader's Validate button;
- opens the welcome solutions notebook and every solutions notebook with an
  ipywidgets explorer, runs all cells, saves, and finds no error output;
- sees a rendered matplotlib image;
- moves a slider of an explorer and sees its output change (this is what a
  widget front-end / kernel version mismatch breaks);
- opens formgrader with the instructor configuration.

A screenshot of each page goes to ``screenshots/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from envtools import free_port

playwright = pytest.importorskip("playwright.sync_api", reason="make test-browser installs playwright")

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]



def _explorer_notebooks() -> list[Path]:
    """The welcome notebook plus every solutions notebook that builds an ipywidgets explorer."""
    found = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        text = path.read_text(encoding="utf-8")
        if path.parent.name == "00_welcome" or "ipywidgets" in text or "explorer(" in text:
            found.append(path.relative_to(ROOT))
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of the course; yields (base_url, token, course_root)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-browser`, which installs Debian's chromium")
    course = tmp_path_factory.mktemp("lab") / "course"
    course.mkdir()
    for item in ("notebooks", "solutions", "nbgrader_config.py"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, course / item)
    port, token = free_port(), "browser-test-token"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel must use the inline backend
    env.update(COURSE_FAST="1", JUPYTER_RUNTIME_DIR=str(course / ".runtime"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}", "--allow-root"]
    log = open(course / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (course / "lab.log").read_text()[-3000:])
            time.sleep(1)
    yield base, token, course
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front


def _open(browser, base: str, token: str, path: str):
    """A new page showing ``path`` alone, in a fresh JupyterLab workspace."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    workspace = f"test-{time.time_ns()}"
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{path}?reset&token={token}")
    page.locator(f"{PANEL} .jp-Cell").first.wait_for(timeout=60_000)
    _idle(page).wait_for(timeout=60_000)  # the kernel has started
    return page


def _idle(page):
    """The status bar's "Python 3 (ipykernel) | Idle"."""
    return page.get_by_text(re.compile(r"\| Idle")).first


def _saved(page, course: Path, notebook: Path) -> dict:
    page.locator(f"{PANEL} .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    time.sleep(1.5)
    return json.loads((course / notebook).read_text(encoding="utf-8"))


def _run_all_and_wait(page, course: Path, notebook: Path, timeout_s: float = 300) -> dict:
    """Run all cells from the Run menu; return the saved notebook once every code cell has run."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(3)
        saved = _saved(page, course, notebook)
        counts = [c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code"]
        if all(counts) and _idle(page).is_visible():
            return saved
    raise AssertionError(f"not every cell ran within {timeout_s} s: execution counts {counts}")


def test_student_notebook_has_the_validate_button(lab, browser):
    base, token, _ = lab
    page = _open(browser, base, token, "notebooks/00_welcome/welcome.ipynb")
    button = page.locator(".validate-button")
    button.first.wait_for(timeout=30_000)
    assert "Validate" in button.first.inner_text()
    _shot(page, "student-welcome")
    page.close()


@pytest.mark.parametrize("notebook", _explorer_notebooks(), ids=str)
def test_solutions_notebook_runs_clean_in_the_browser(lab, browser, notebook):
    base, token, course = lab
    page = _open(browser, base, token, str(notebook))
    saved = _run_all_and_wait(page, course, notebook)
    errors = [
        (cell.get("id"), out.get("ename"), out.get("evalue"))
        for cell in saved["cells"]
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
    assert page.locator(f"{PANEL} .jp-RenderedImage img").count() > 0, "no matplotlib figure was rendered"
    _shot(page, f"solutions-{notebook.parent.name}")
    sliders = page.locator(f"{PANEL} .widget-slider, {PANEL} .jupyter-widgets.widget-hslider")
    if sliders.count():
        _move_a_slider_and_see_the_output_change(page, sliders.first)
        _shot(page, f"solutions-{notebook.parent.name}-slider")
    else:
        pytest.fail("the notebook builds widgets, but none rendered: is the widget front end installed?")
    page.close()


def _explorer_output(widget) -> str:
    """What an explorer shows: its figure (the image's data URL) and its printed text."""
    images = widget.locator("img")
    src = images.first.get_attribute("src") if images.count() else ""
    return (src or "") + widget.locator(".widget-output, .jupyter-widgets-output-area").first.inner_text()


def _move_a_slider_and_see_the_output_change(page, slider) -> None:
    widget = slider.locator("xpath=ancestor::div[contains(@class, 'widget-interact') or "
                            "contains(@class, 'jp-OutputArea-output')][1]")
    slider.scroll_into_view_if_needed()
    deadline = time.time() + 30
    before = _explorer_output(widget)
    while not before.strip() and time.time() < deadline:  # the explorer's first output may still be coming
        time.sleep(0.5)
        before = _explorer_output(widget)
    assert before.strip(), "the explorer showed nothing before its slider moved"
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    deadline = time.time() + 30
    while time.time() < deadline:
        after = _explorer_output(widget)
        if after.strip() and after != before:
            return
        time.sleep(0.5)
    raise AssertionError("moving the slider did not change the explorer's output")


def test_formgrader_opens_with_the_instructor_configuration(lab, browser):
    base, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{base}/formgrader?token={token}")
    page.wait_for_load_state("networkidle")
    page.get_by_text("Manage Assignments").first.wait_for(timeout=30_000)
    page.get_by_text("00_welcome").first.wait_for(timeout=30_000)
    _shot(page, "formgrader")
    page.close()
