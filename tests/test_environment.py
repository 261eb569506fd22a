"""The environment check of notebook 00, and environment.yml in step with pyproject.toml.

The check must judge the lora_lab that is imported -- pip-installed or merely on
PYTHONPATH -- and report every requirement, even when one of them is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from lora_lab import environment
from lora_lab.environment import check_environment, environment_report

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


# --------------------------------------------------------------------------- the check in 00


def runtime_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [parse(line)[0] for line in project["dependencies"]]


def rows_by_name(rows: list[environment.RequirementCheck]) -> dict:
    return {re.sub(r"[-_.]+", "-", row.name).lower(): row for row in rows}


def write_checkout(tmp_path: Path, dependencies: list[str], python: str = ">=3.10") -> Path:
    """A checkout folder with a pyproject.toml; returns its (empty) package folder."""
    listed = ", ".join(json.dumps(d) for d in dependencies)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "lora_lab"\nrequires-python = "{python}"\n'
        f"dependencies = [{listed}]\n")
    (tmp_path / "lora_lab").mkdir()
    return tmp_path / "lora_lab"


def test_this_environment_passes_and_names_its_source(capsys) -> None:
    assert check_environment() is True
    out = capsys.readouterr().out
    assert "Environment OK" in out and "❌" not in out
    rows = rows_by_name(environment_report())
    assert list(rows) == ["python", "lora-lab", *runtime_names()]
    assert str(ROOT / "pyproject.toml") in rows["lora-lab"].message
    assert "imported from " + str(ROOT / "lora_lab") in rows["lora-lab"].message


def test_without_a_pyproject_the_installed_metadata_is_read(tmp_path: Path) -> None:
    """A non-editable install has no pyproject.toml beside the package."""
    (tmp_path / "lora_lab").mkdir()
    rows = rows_by_name(environment_report(tmp_path / "lora_lab"))
    assert all(row.ok for row in rows.values())
    assert list(rows) == ["python", "lora-lab", *runtime_names()]
    assert "requirements from the installed package" in rows["lora-lab"].message


def test_without_pyproject_or_metadata_it_says_so(tmp_path, monkeypatch, capsys) -> None:
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.metadata, "distribution", not_installed)
    (tmp_path / "lora_lab").mkdir()
    python, lora_lab = environment_report(tmp_path / "lora_lab")
    assert python.ok and not lora_lab.ok
    assert lora_lab.installed == "0.1.0"  # importable: never "not installed"
    assert "lora_lab 0.1.0 found, but no pyproject.toml beside" in lora_lab.message
    assert "requirements are unknown" in lora_lab.message


def test_a_missing_and_a_too_old_dependency_do_not_stop_the_others(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    package = write_checkout(tmp_path, [*project["dependencies"],
                                        "lora-lab-missing-dependency>=1.0", "numpy>=999"])
    rows = rows_by_name(environment_report(package))
    missing, numpy = rows["lora-lab-missing-dependency"], rows["numpy"]
    assert missing.installed is None and not missing.ok
    assert missing.message.startswith("lora-lab-missing-dependency is not installed (need >=1.0)")
    assert not numpy.ok and "the course needs numpy>=999" in numpy.message
    assert "make lab" in numpy.message
    # every other requirement is still checked, and passes
    others = [row for name, row in rows.items() if name not in ("numpy", missing.name)]
    assert len(others) == 2 + len(runtime_names()) - 1 and all(row.ok for row in others)
    assert rows["torch"].message.startswith("torch 2.13.0")


def test_too_old_python_extras_and_markers(tmp_path: Path) -> None:
    package = write_checkout(tmp_path, ["numpy>=1.0", 'pytest>=8; extra == "dev"',
                                        'numpy-never-needed; python_version < "3"'],
                             python=">=99")
    rows = rows_by_name(environment_report(package))
    assert list(rows) == ["python", "lora-lab", "numpy"]
    assert not rows["python"].ok and "the course needs python>=99" in rows["python"].message


def test_a_requirement_importable_without_pip_metadata(tmp_path, monkeypatch) -> None:
    """Found by importing it (a folder on PYTHONPATH), like lora_lab itself."""
    for name, body in [("lora_lab_fake_dep", '__version__ = "1.2.3"\n'),
                       ("lora_lab_fake_unversioned", "")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    package = write_checkout(tmp_path / "checkout", ["lora-lab-fake-dep>=1.0",
                                                     "lora-lab-fake-unversioned>=1.0"])
    rows = rows_by_name(environment_report(package))
    assert rows["lora-lab-fake-dep"].ok and rows["lora-lab-fake-dep"].installed == "1.2.3"
    unversioned = rows["lora-lab-fake-unversioned"]
    assert not unversioned.ok and "its version cannot be read" in unversioned.message
    package = write_checkout(tmp_path / "any", ["lora-lab-fake-unversioned"])
    assert rows_by_name(environment_report(package))["lora-lab-fake-unversioned"].ok


def test_without_packaging_every_row_is_still_reported(monkeypatch) -> None:
    monkeypatch.setattr(environment, "Requirement", None)  # as if packaging were missing
    rows = rows_by_name(environment_report())
    assert list(rows) == ["python", "lora-lab", *runtime_names()]
    assert rows["numpy"].installed is not None and not rows["numpy"].ok
    assert "cannot be compared without the package packaging" in rows["numpy"].message


def site_packages_without_lora_lab(tmp_path: Path) -> Path:
    """This venv's site-packages, linked entry by entry, minus lora_lab's pip install."""
    fake = tmp_path / "site-packages"
    fake.mkdir()
    for site in {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}:
        for entry in site.iterdir():
            skip = entry.name.startswith(("lora_lab", "__editable__")) or entry.suffix == ".pth"
            if not skip and not (fake / entry.name).exists():
                (fake / entry.name).symlink_to(entry)
    return fake


def test_lora_lab_on_pythonpath_only_passes(tmp_path: Path) -> None:
    """A Colab-style checkout: lora_lab importable through PYTHONPATH, never pip-installed.

    The checkout is a fresh copy of the package and pyproject.toml (no build
    leftovers such as lora_lab.egg-info). ``-S`` skips site-packages (and with it
    the editable install's finder and lora_lab's metadata); the dependencies come
    from a copy of site-packages that lacks lora_lab's files.
    """
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "lora_lab", checkout / "lora_lab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    code = ("import importlib.metadata as md, json, lora_lab\n"
            "from lora_lab.environment import check_environment\n"
            "try:\n    md.version('lora_lab'); pip = True\n"
            "except md.PackageNotFoundError:\n    pip = False\n"
            "ok = check_environment()\n"
            "print(json.dumps({'file': lora_lab.__file__, 'pip': pip, 'ok': ok}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(checkout), str(site_packages_without_lora_lab(tmp_path))])}
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *report, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    assert result == {"file": str(checkout / "lora_lab" / "__init__.py"), "pip": False,
                      "ok": True}
    assert "not installed" not in done.stdout
    assert (f"✅ lora_lab 0.1.0 ok (imported from {checkout / 'lora_lab'}; requirements from "
            f"{checkout / 'pyproject.toml'})") in done.stdout
    assert report[-1] == "Environment OK: you are ready to start."


def test_every_re_exported_name_resolves_to_what_it_names() -> None:
    """Lazy names load their module on first use; a name equal to a submodule is shadowed."""
    import importlib

    import lora_lab

    for name in lora_lab.__all__:
        value = getattr(lora_lab, name)
        assert not isinstance(value, type(lora_lab)), f"lora_lab.{name} is a module, not a name"
    assert importlib.import_module("lora_lab.train").train is not None
