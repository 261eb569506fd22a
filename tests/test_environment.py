"""environment.yml (conda route) lists exactly the dependencies of pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dev dependency there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def parse(requirement: str) -> tuple[str, str]:
    """'Torch == 2.13.0' -> ('torch', '==2.13.0'), names normalised as PEP 503 does.

    An environment marker (``; python_version < "3.11"``) is dropped: conda lists such a
    package unconditionally.
    """
    match = REQUIREMENT.match(requirement.split(";")[0])
    assert match, f"cannot parse requirement {requirement!r}"
    name, spec = match.groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(parse(r) for r in requirements) | {"python": project["requires-python"]}


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, str] = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-") or entry == "pip":  # pip options, "-e .", pip itself
                continue
            name, spec = parse(entry)
            assert name not in found, f"{name} listed twice in environment.yml"
            found[name] = spec
    return found


def test_environment_yml_is_valid_conda() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert set(env) <= {"name", "channels", "dependencies"} and env["name"]
    assert any(isinstance(d, dict) and "pip" in d for d in env["dependencies"])
    assert "-e ." in next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]


def test_same_dependencies_and_versions() -> None:
    ours, conda = pyproject_requirements(), conda_requirements()
    assert sorted(set(ours) - set(conda)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(conda) - set(ours)) == [], "in environment.yml but not pyproject.toml"
    drift = {name: (ours[name], conda[name]) for name in ours if ours[name] != conda[name]}
    assert drift == {}, f"version specifiers drifted apart: {drift}"


def test_torch_is_pinned_to_the_cpu_build_everywhere() -> None:
    assert pyproject_requirements()["torch"] == "==2.13.0"
    assert "torch==2.13.0" in (ROOT / "tools" / "setup_venv.sh").read_text()


def test_setup_is_idempotent() -> None:
    """Once .venv is installed, `make` has nothing left to install (`make -q` exits 0)."""
    if not (ROOT / ".venv" / ".installed").exists() or shutil.which("make") is None:
        pytest.skip("run through `make test` to check the installed .venv")
    dry = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert "pip install" not in dry.stdout, f"a second `make` would reinstall:\n{dry.stdout}"
    assert subprocess.run(["make", "-q", "setup"], cwd=ROOT).returncode == 0
