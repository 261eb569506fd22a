"""Is this environment right for the course? Every requirement of lora_lab, checked one by one.

The requirements are those of the ``lora_lab`` that is actually imported: read
from the ``pyproject.toml`` beside it (a checkout, used through ``pip install -e .``,
``PYTHONPATH`` or a notebook's working folder), else from the installed
package's metadata. Being importable is what counts, not being pip-installed,
and one missing package never stops the check of the others.

Why: a wrong version fails later with a confusing error in the middle of a
lesson; checking up front turns that into one clear sentence with a fix.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # packaging is itself a requirement: its row will say it is missing
    Requirement = None

FIX = ("run `make lab` from the course folder (or `pip install -e .` there), which installs "
       "what is missing, then restart the kernel")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class RequirementCheck:
    """One row of the environment report.

    ``required`` is a version specifier (``">=1.26"``, ``""`` for any version);
    ``installed`` the version found (None: not importable); ``fits`` whether it
    satisfies ``required`` (None: could not be compared, see ``note``).
    """

    name: str
    required: str
    installed: str | None
    fits: bool | None = True
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.installed is not None and self.fits is True

    @property
    def message(self) -> str:
        if self.installed is None:
            return f"{self.name} is not installed (need {self.required or 'any version'}); {FIX}"
        if self.fits is None:
            return f"{self.name} {self.installed} found, but {self.note}"
        if not self.fits:
            return (f"{self.name} {self.installed} is installed, the course needs "
                    f"{self.name}{self.required}; {FIX}")
        return f"{self.name} {self.installed} ok" + (f" ({self.note})" if self.note else "")


NOT_COMPARED = "its version cannot be compared without the package packaging"


def _fits(version: str, specifier: str) -> bool | None:
    """Whether ``version`` satisfies ``specifier``; None when that cannot be told."""
    if not specifier:
        return True
    if Requirement is None:
        return None
    try:
        parsed = Version(version)
    except InvalidVersion:  # a module that does not say its version
        return None
    # "==2.13.0" accepts the local build "2.13.0+cpu", as pip does
    return Requirement(f"x{specifier}").specifier.contains(parsed, prereleases=True)


def _split(line: str) -> tuple[str, str] | None:
    """``"numpy>=1.26"`` -> ``("numpy", ">=1.26")``; None for one this platform does not need.

    Extras (``; extra == "dev"``: the maintainers' tools) and requirements whose
    marker excludes this Python are skipped.
    """
    if Requirement is None:  # no parser: split off the name; versions are not compared
        match = _NAME.match(line)
        return None if ";" in line or match is None else (match[1], line[match.end():].strip())
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return req.name, str(req.specifier)


def _installed_version(name: str) -> str | None:
    """The version of ``name`` that Python can import (pip metadata first, then the module)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    try:  # importable without pip metadata (a folder on PYTHONPATH, a vendored copy)
        module = importlib.import_module(name.replace("-", "_").lower())
    except Exception:  # ImportError, or a broken package that fails while importing
        return None
    return str(getattr(module, "__version__", "unknown version"))


def _pyproject(package_dir: Path) -> Path | None:
    """The ``pyproject.toml`` of the checkout that holds ``package_dir``, if there is one."""
    candidate = package_dir.parent / "pyproject.toml"
    if candidate.is_file() and re.search(r'(?m)^name\s*=\s*"lora_lab"', candidate.read_text()):
        return candidate
    return None


def _read_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser from PyPI (installed by `pip install -e ".[dev]"`)
        import tomli as tomllib
    return tomllib.loads(path.read_text())


def declared_requirements(package_dir: Path) -> tuple[str, list[str], str]:
    """``(requires_python, requirement lines, where they were read)`` for the lora_lab in
    ``package_dir``.

    Read from the ``pyproject.toml`` beside the package when there is one (the
    code that is actually imported), else from the installed distribution's
    metadata. Raises ``LookupError`` when neither can be read, with the reason.
    """
    pyproject, problem = _pyproject(package_dir), ""
    if pyproject is not None:
        try:
            project = _read_toml(pyproject)["project"]
        except ImportError:  # Python 3.10 without tomli: the metadata may still do
            problem = (f"cannot read {pyproject} on Python 3.10 without the package tomli "
                       "(`pip install tomli`)")
        else:
            return (project.get("requires-python", ""), list(project["dependencies"]),
                    str(pyproject))
    try:
        dist = metadata.distribution("lora_lab")
    except metadata.PackageNotFoundError:
        raise LookupError(problem or f"no pyproject.toml beside {package_dir} and lora_lab is "
                          "not pip-installed, so its requirements are unknown") from None
    return dist.metadata["Requires-Python"] or "", dist.requires or [], "the installed package"


def environment_report(package_dir: Path | None = None) -> list[RequirementCheck]:
    """Python, lora_lab and each of its runtime requirements: required version vs installed.

    ``package_dir`` is the folder of the ``lora_lab`` package to judge (default:
    the one imported). Never raises for a broken environment: every problem is a
    row whose ``ok`` is False.
    """
    if package_dir is None:
        package_dir = Path(__file__).resolve().parent
    from . import __version__

    python = ".".join(map(str, sys.version_info[:3]))
    rows = []
    try:
        requires_python, lines, source = declared_requirements(package_dir)
    except LookupError as exc:
        return [RequirementCheck("python", "", python),
                RequirementCheck("lora_lab", "", __version__, fits=None, note=f"{exc}; {FIX}")]
    fits = _fits(python, requires_python)
    rows.append(RequirementCheck("python", requires_python, python, fits,
                                 note="" if fits is not None else NOT_COMPARED))
    rows.append(RequirementCheck("lora_lab", "", __version__,
                                 note=f"imported from {package_dir}; requirements from {source}"))
    for line in lines:
        split = _split(line)
        if split is None:
            continue
        name, specifier = split
        installed = _installed_version(name)
        fits = _fits(installed, specifier) if installed is not None else False
        note = "" if fits is not None else (NOT_COMPARED if Requirement is None else
                                            "its version cannot be read")
        rows.append(RequirementCheck(name, specifier, installed, fits, note))
    return rows


def check_environment() -> bool:
    """Print one line per requirement and a verdict; return True when everything fits."""
    rows = environment_report()
    for row in rows:
        print(("✅ " if row.ok else "❌ ") + row.message)
    problems = [row for row in rows if not row.ok]
    print("Environment OK: you are ready to start." if not problems else
          f"{len(problems)} problem(s) above: fix them, restart the kernel, and run this again.")
    return not problems
