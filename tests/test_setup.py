"""The setup a newcomer runs cannot be broken by the usual accidents.

- a half-made ``.venv`` (a Python without ensurepip) is detected and rebuilt, or the
  message says exactly what to install;
- notebook checkpoints (``.ipynb_checkpoints``) are never tested, synced or refreshed;
- ``make test`` re-runs the notebooks on other CPU kernels (the portability run).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "tools" / "setup_venv.sh"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run_setup(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHON": str(python), "VENV": str(tmp_path / ".venv")}
    return subprocess.run(["sh", str(SETUP)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def python_without_ensurepip(tmp_path: Path) -> Path:
    """A stand-in for a Python whose `-m venv` leaves a venv without pip (as Debian's does)."""
    return executable(tmp_path / "fake" / "python3", """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"; printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/python"; chmod +x "$3/bin/python"
    echo "Error: ensurepip is not available" >&2; exit 1
fi
exit 0
""")


def test_a_broken_venv_is_detected_and_rebuilt(tmp_path: Path) -> None:
    executable(tmp_path / ".venv" / "bin" / "python", "#!/bin/sh\necho 'No module named pip' >&2\n"
                                                       "exit 1\n")
    result = run_setup(tmp_path, python_without_ensurepip(tmp_path))
    assert ".venv is broken (its python cannot run pip): rebuilding it" in result.stdout
    # rebuilding with a Python that cannot make venvs fails with the fix, and leaves no half venv
    assert result.returncode != 0
    assert "sudo apt-get install python3-venv" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_too_old_or_missing_python_is_named(tmp_path: Path) -> None:
    result = run_setup(tmp_path, tmp_path / "no-such-python")
    assert result.returncode != 0
    assert "missing or older than Python 3.10" in result.stderr


def test_setup_takes_torch_from_the_cpu_index_on_linux() -> None:
    text = SETUP.read_text()
    assert '--index-url "$CPU_INDEX"' in text and "download.pytorch.org/whl/cpu" in text
    # ... and falls back to the default index where only that one is reachable
    assert text.count('install --quiet "$TORCH"') == 3


def test_make_rebuilds_when_the_venv_python_is_gone(tmp_path: Path) -> None:
    """With the stamp present but a venv whose python cannot run, make plans a setup."""
    venv = tmp_path / "venv"
    (venv).mkdir()
    (venv / ".installed").touch()
    plan = subprocess.run(["make", "-n", "setup", f"VENV={venv}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "tools/setup_venv.sh" in plan.stdout


def test_checkpoints_are_never_tested_or_synced() -> None:
    checkpoint_dir = ROOT / "notebooks" / ".ipynb_checkpoints"
    created = not checkpoint_dir.exists()
    checkpoint = checkpoint_dir / "zz_test_only-checkpoint.ipynb"
    checkpoint_dir.mkdir(exist_ok=True)
    checkpoint.write_text("not even JSON")
    try:
        sys.path.insert(0, str(ROOT / "tools"))
        import sync_notebooks

        assert all(".ipynb_checkpoints" not in str(p) for _, p in sync_notebooks.twins())
        collected = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval",
             "--nbval-current-env", "-p", "no:cacheprovider", "notebooks"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert "checkpoint" not in collected.stdout and collected.returncode == 0
    finally:
        checkpoint.unlink()
        if created:
            checkpoint_dir.rmdir()


def test_make_test_includes_the_portability_run() -> None:
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60).stdout
    assert "test-portability" in plan
    portability = subprocess.run(["make", "-n", "test-portability"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60).stdout
    assert "ATEN_CPU_CAPABILITY=default" in portability and "OPENBLAS_CORETYPE=" in portability
    assert "--nbval" in portability


@pytest.mark.parametrize("test_file", ["test_browser_slider.py", "test_make_lab.py"])
def test_slow_tests_are_marked_for_the_quick_tier(test_file: str) -> None:
    assert "pytestmark = pytest.mark.slow" in (ROOT / "tests" / test_file).read_text()
