"""The rank slider of notebook 01 works in a real browser, end to end.

Other tests call ``RankSlider`` from Python; only a browser shows that the
widget actually renders in JupyterLab and that dragging the slider round-trips
through the kernel and redraws the picture. This test:

1. starts its own JupyterLab on 127.0.0.1 (free port, no token, nothing that
   phones home), serving a throwaway COPY of ``notebooks/`` and ``data/`` with
   its own config, data and runtime folders, so neither the repository nor the
   user's Jupyter set-up is touched;
2. opens ``01_rank_and_svd.ipynb`` in Debian's Chromium through Playwright and
   runs all cells;
3. moves the rank slider with the keyboard, then drags it with the mouse, and
   checks each time that the readout shows the new rank and that the PNG of
   the reconstruction changed;
4. leaves screenshots in ``tests/artifacts/`` (gitignored).

Without ``/usr/bin/chromium`` or the ``playwright`` package the test is skipped
on a learner's machine, but fails under CI (``CI=true``), where a skip would
silently hide a broken widget.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow  # a real browser: outside the quick tier

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "data"
NOTEBOOK = "01_rank_and_svd.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")

SERVER_START_TIMEOUT_S = 60.0
PAGE_TIMEOUT_MS = 60_000  # JupyterLab loading, kernel start, widget rendering
RUN_ALL_TIMEOUT_MS = 180_000  # executing every cell of notebook 01
UPDATE_TIMEOUT_MS = 30_000  # one slider move: browser -> kernel -> browser
KEY_PRESSES = 3  # the keyboard move: this many ArrowRight (or ArrowLeft) presses

CHROMIUM_ARGS = [
    "--no-sandbox",  # we may run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    # Belt and braces: the page may only ever reach our own server.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# JupyterLab user settings for the throwaway config dir: no news or update checks,
# every cell attached to the DOM (so locators find off-screen outputs), start the
# notebook's kernel without asking, and never write the notebook back to disk.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}

# JupyterLab page config: skip the "is a rebuild needed?" check, seconds of server CPU.
PAGE_CONFIG: dict[str, Any] = {"buildCheck": False, "buildAvailable": False}

HOW_TO_ENABLE = (
    "The browser test drives JupyterLab with Debian's Chromium through Playwright. "
    "To enable it: `sudo apt-get install chromium` (it must end up at /usr/bin/chromium) "
    "and `pip install playwright` (or `pip install -e '.[dev]'`); Playwright's own "
    "browser download is not needed."
)


# --------------------------------------------------------------------------- skip / fail


def running_under_ci() -> bool:
    """Whether the ``CI`` environment variable says we run in continuous integration."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def missing_browser_requirements() -> list[str]:
    """What is missing to run the browser test; an empty list if nothing is."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"no Chromium executable at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the `playwright` Python package is not installed")
    return missing


def require_browser() -> None:
    """Skip the test if Chromium or Playwright is missing, or fail under CI."""
    missing = missing_browser_requirements()
    if not missing:
        return
    message = f"{'; '.join(missing)}. {HOW_TO_ENABLE}"
    if running_under_ci():
        pytest.fail(f"CI=true, so the browser test may not be skipped: {message}")
    pytest.skip(message)


def test_missing_browser_is_a_skip_on_a_learners_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without Chromium a learner gets a skip that says how to enable the test."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_browser()


def test_missing_browser_is_a_failure_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under CI a missing browser or Playwright must fail, never skip."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import now fails
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pip install playwright") as failure:
        require_browser()
    assert "no Chromium executable" in str(failure.value)
    assert "`playwright` Python package is not installed" in str(failure.value)


# --------------------------------------------------------------------------- JupyterLab


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, the folder it serves and its log file."""

    url: str
    root_dir: Path
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, to explain a failure."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no server log: {exc})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_lab_settings(settings_dir: Path) -> None:
    """Write ``LAB_SETTINGS`` as JupyterLab user settings under ``settings_dir``."""
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def clear_outputs(path: Path) -> None:
    """Drop the stored outputs of the notebook COPY at ``path``.

    Everything on the page then comes from this run (no stale "model not found"
    widget placeholders), and JupyterLab opens the notebook faster.
    """
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


def wait_until_serving(proc: subprocess.Popen[bytes], server: LabServer, timeout: float) -> None:
    """Poll ``/api/status`` until the server answers, it dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"JupyterLab exited with code {proc.returncode} before answering.\n"
                f"--- server log ---\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/api/status", timeout=2) as response:
                json.load(response)
                return
        except (OSError, ValueError) as exc:  # URLError and refused connections are OSErrors
            last_error = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"JupyterLab did not answer within {timeout:.0f} s ({last_error}).\n"
        f"--- server log ---\n{server.log_tail()}"
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group, then any kernel it left behind.

    SIGTERM makes Jupyter shut its kernels down; kernels run in sessions of their
    own, so survivors are then killed one by one, by process (psutil checks that
    a pid still names the same process before signalling it).
    """
    import psutil  # a dependency of ipykernel

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """An isolated JupyterLab on 127.0.0.1 serving a copy of the course notebooks."""
    require_browser()
    base = tmp_path_factory.mktemp("jupyterlab")
    root_dir = base / "course" / "notebooks"
    shutil.copytree(NOTEBOOKS, root_dir, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if DATA.is_dir():  # notebooks read ../data, as they do in the repository
        shutil.copytree(DATA, base / "course" / "data")
    if not (root_dir / NOTEBOOK).is_file():
        pytest.fail(f"{NOTEBOOKS / NOTEBOOK} does not exist")
    clear_outputs(root_dir / NOTEBOOK)

    config_dir = base / "config"
    write_lab_settings(config_dir / "lab" / "user-settings")
    page_config = config_dir / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True)
    page_config.write_text(json.dumps(PAGE_CONFIG))
    env = {
        **os.environ,
        # Isolated from the user's Jupyter and IPython set-up; the venv's kernel spec
        # and widget extension stay visible through sys.prefix/share/jupyter.
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(config_dir / "lab" / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(config_dir / "lab" / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
        # One thread, as in every other test of the course (see conftest.py).
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    port = free_port()
    server = LabServer(
        url=f"http://127.0.0.1:{port}", root_dir=root_dir, log_path=base / "server.log"
    )
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # fail loudly rather than drift to another port
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to run all cells
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # containers and CI often run as root
    with server.log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
    try:
        wait_until_serving(proc, server, SERVER_START_TIMEOUT_S)
        yield server
    finally:
        stop_server(proc)


# --------------------------------------------------------------------------- browser


@dataclass
class BrowserPage:
    """A Playwright page plus the uncaught JavaScript errors it has raised so far."""

    page: Page
    errors: list[str]


@pytest.fixture
def browser_page(lab_server: LabServer) -> Iterator[BrowserPage]:
    """A fresh page in headless Debian Chromium, closed (with the browser) afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 960})
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield BrowserPage(page=page, errors=errors)
        finally:
            browser.close()


# Notebook 01 is the current document and has a session context.
NOTEBOOK_OPEN_JS = """
(notebook) => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(widget && widget.context && widget.context.path.endsWith(notebook)
            && widget.sessionContext);
}
"""

# Waits (at most timeoutMs) for notebook 01's kernel, runs every cell, and reports
# whether all succeeded plus any error outputs. NotebookActions.runAll, behind the
# command, only resolves when the last cell has finished.
RUN_ALL_JS = """
async ([notebook, timeoutMs]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.context || !panel.context.path.endsWith(notebook)) {
    throw new Error('current widget is not ' + notebook);
  }
  const runAll = async () => {
    await panel.context.ready;
    await panel.sessionContext.ready;
    app.shell.activateById(panel.id);
    return await app.commands.execute('notebook:run-all-cells');
  };
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(
    'kernel start + Run All Cells did not finish within ' + timeoutMs + ' ms')), timeoutMs));
  const ok = await Promise.race([runAll(), timeout]);
  const errors = [];
  for (const cell of panel.content.widgets) {
    if (cell.model.type !== 'code') continue;
    for (const out of cell.model.outputs.toJSON()) {
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
  }
  return {ok: ok !== false, errors};
}
"""

# The notebook's kernel has nothing left to do (no slider update in flight).
KERNEL_IDLE_JS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && !panel.sessionContext.pendingInput;
}
"""

# SHA-256 of the bytes behind the <img> (a blob: URL made by ipywidgets).
IMAGE_DIGEST_JS = """
async (img) => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, '0')).join('');
}
"""


@dataclass(frozen=True)
class WidgetState:
    """What a learner sees of the rank explorer at one moment."""

    rank: int  # the slider's own value readout
    readout: str  # text of the HTML readout (rank, error, energy, compression)
    image_src: str
    image_digest: str


@dataclass(frozen=True)
class RankExplorer:
    """Locators for the parts of the ``RankSlider`` widget on the page."""

    root: Locator
    slider: Locator
    handle: Locator
    value: Locator
    readout: Locator
    image: Locator

    @classmethod
    def find(cls, page: Page) -> RankExplorer:
        """The first VBox holding an int slider, an HTML readout and an image."""
        root = (
            page.locator(".jp-OutputArea-output .widget-vbox")
            .filter(has=page.locator(".widget-hslider"))
            .filter(has=page.locator(".widget-html"))
            .filter(has=page.locator("img.widget-image"))
            .first
        )
        slider = root.locator(".widget-hslider").first
        return cls(
            root=root,
            slider=slider,
            handle=slider.locator(".noUi-handle").first,
            value=slider.locator(".widget-readout").first,
            readout=root.locator(".widget-html-content").first,
            image=root.locator("img.widget-image").first,
        )

    def state(self) -> WidgetState:
        """Read the current rank, readout text and image."""
        return WidgetState(
            rank=int(self.value.inner_text().strip()),
            readout=" ".join(self.readout.inner_text().split()),
            image_src=self.image.get_attribute("src") or "",
            image_digest=self.image.evaluate(IMAGE_DIGEST_JS),
        )

    def show(self) -> None:
        """Scroll the notebook so that the whole widget is in the middle of the window."""
        self.root.evaluate("e => e.scrollIntoView({block: 'center', inline: 'nearest'})")

    def bounds(self) -> tuple[int, int]:
        """The slider's minimum and maximum, from the handle's ARIA attributes."""
        low = self.handle.get_attribute("aria-valuemin") or "nan"
        high = self.handle.get_attribute("aria-valuemax") or "nan"
        return round(float(low)), round(float(high))


def readout_rank_pattern(rank: int) -> re.Pattern[str]:
    """Matches a readout that states ``rank`` ("rank 7 of 512 | ...", "Rank: 7")."""
    return re.compile(rf"\brank\b\D{{0,12}}?(?<!\d){rank}(?!\d)", re.IGNORECASE)


def wait_for_settled(page: Page, explorer: RankExplorer, rank: int) -> WidgetState:
    """Wait until slider and readout show ``rank`` and the kernel is idle; read the state."""
    from playwright.sync_api import expect

    expect(explorer.value).to_have_text(str(rank), timeout=UPDATE_TIMEOUT_MS)
    expect(explorer.readout).to_have_text(readout_rank_pattern(rank), timeout=UPDATE_TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=UPDATE_TIMEOUT_MS)
    expect(explorer.image).to_have_js_property("complete", True, timeout=UPDATE_TIMEOUT_MS)
    return explorer.state()


def assert_changed(before: WidgetState, after: WidgetState, rank: int) -> None:
    """The move reached the kernel: new rank everywhere, new readout, new picture."""
    assert after.rank == rank, f"slider shows {after.rank}, expected {rank}"
    assert readout_rank_pattern(rank).search(after.readout), after.readout
    assert after.readout != before.readout, f"readout did not change: {after.readout!r}"
    assert after.image_src != before.image_src, "the <img> src did not change"
    assert after.image_digest != before.image_digest, "the PNG bytes did not change"


def screenshot(page: Page, explorer: RankExplorer | None, name: str) -> Path:
    """Save a screenshot of the page (scrolled to the widget) under tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if explorer is not None:
        with contextlib.suppress(Exception):
            explorer.show()
    page.screenshot(path=str(path))
    return path


def expect_rank_change(explorer: RankExplorer, old_rank: int) -> None:
    """Wait until the slider's value readout shows anything but ``old_rank``."""
    from playwright.sync_api import expect

    expect(explorer.value).not_to_have_text(str(old_rank), timeout=UPDATE_TIMEOUT_MS)


@pytest.mark.browser
def test_rank_slider_redraws_in_jupyterlab(
    lab_server: LabServer, browser_page: BrowserPage
) -> None:
    """Moving the rank slider in JupyterLab updates the readout and the picture."""
    page = browser_page.page
    explorer: RankExplorer | None = None
    (ARTIFACTS / "browser_slider_failure.png").unlink(missing_ok=True)  # from an older run
    try:
        page.goto(f"{lab_server.url}/lab/tree/{NOTEBOOK}", wait_until="domcontentloaded")
        page.wait_for_function(NOTEBOOK_OPEN_JS, arg=NOTEBOOK)
        result = page.evaluate(RUN_ALL_JS, [NOTEBOOK, RUN_ALL_TIMEOUT_MS])
        assert result["ok"] and not result["errors"], f"Run All Cells failed: {result}"

        explorer = RankExplorer.find(page)
        explorer.image.wait_for(state="visible")
        before = wait_for_settled(page, explorer, int(explorer.value.inner_text().strip()))
        explorer.show()
        screenshot(page, explorer, "browser_slider_before.png")

        # 1. Keyboard: focus the slider handle and press an arrow key a few times.
        low, high = explorer.bounds()
        key, step = ("ArrowRight", 1) if before.rank + KEY_PRESSES <= high else ("ArrowLeft", -1)
        target = before.rank + step * KEY_PRESSES
        assert low <= target <= high, f"slider range [{low}, {high}] is too small to move"
        explorer.handle.focus()
        for _ in range(KEY_PRESSES):
            explorer.handle.press(key)
        after_keys = wait_for_settled(page, explorer, target)
        assert_changed(before, after_keys, target)

        # 2. Mouse: drag the handle a quarter of the track towards the farther end.
        explorer.show()
        track = explorer.slider.locator(".noUi-target").first.bounding_box()
        handle = explorer.handle.bounding_box()
        assert track is not None and handle is not None, "slider is not rendered"
        x0, y0 = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        direction = 1 if after_keys.rank - low <= high - after_keys.rank else -1
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + direction * track["width"] / 4, y0, steps=8)
        page.mouse.up()
        expect_rank_change(explorer, after_keys.rank)
        dragged = int(explorer.value.inner_text().strip())
        assert (dragged - after_keys.rank) * direction > 0, "the drag moved the slider backwards"
        after_drag = wait_for_settled(page, explorer, dragged)
        assert_changed(after_keys, after_drag, dragged)

        assert not browser_page.errors, f"uncaught JavaScript errors: {browser_page.errors}"
        screenshot(page, explorer, "browser_slider.png")
    except Exception as exc:
        with contextlib.suppress(Exception):
            screenshot(page, explorer, "browser_slider_failure.png")
        pytest.fail(
            f"{type(exc).__name__}: {exc}\n"
            f"--- uncaught JavaScript errors ---\n{browser_page.errors}\n"
            f"--- server log (tail) ---\n{lab_server.log_tail()}\n"
            f"(screenshot: {ARTIFACTS / 'browser_slider_failure.png'})"
        )
