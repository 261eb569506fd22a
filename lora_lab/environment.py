"""Is this environment right for the course? Versions checked against what lora_lab declares.

Why: a wrong version fails later with a confusing error in the middle of a
lesson; checking up front turns that into one clear sentence with a fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement

FIX = "run `make lab` (or `make test`) from the course folder, which installs what is missing"


@dataclass(frozen=True)
class RequirementCheck:
    """One row of the environment report."""

    name: str
    required: str
    installed: str | None

    @property
    def ok(self) -> bool:
        if self.installed is None:
            return False
        # "==2.13.0" accepts the local build "2.13.0+cpu", as pip does
        return Requirement(f"{self.name}{self.required}").specifier.contains(
            self.installed, prereleases=True)

    @property
    def message(self) -> str:
        if self.installed is None:
            return f"{self.name} is not installed (need {self.required or 'any version'}); {FIX}"
        if not self.ok:
            return (f"{self.name} {self.installed} is installed, the course needs "
                    f"{self.name}{self.required}; {FIX}")
        return f"{self.name} {self.installed} ok"


def environment_report() -> list[RequirementCheck]:
    """Python and each runtime dependency of lora_lab: required version vs installed one."""
    python = ".".join(map(str, sys.version_info[:3]))
    try:
        requires_python = metadata.metadata("lora_lab")["Requires-Python"] or ""
        requirements = metadata.requires("lora_lab") or []
    except metadata.PackageNotFoundError:  # imported from a checkout without `pip install -e .`
        return [RequirementCheck("python", ">=3.10", python),
                RequirementCheck("lora_lab", "", None)]
    rows = [RequirementCheck("python", requires_python, python)]
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None:  # optional extras (dev tools) are not needed to learn
            continue
        try:
            installed: str | None = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            installed = None
        rows.append(RequirementCheck(req.name, str(req.specifier), installed))
    return rows


def check_environment() -> bool:
    """Print one line per requirement and a verdict; return True when everything fits."""
    rows = environment_report()
    for row in rows:
        print(("✅ " if row.ok else "❌ ") + row.message)
    problems = [row for row in rows if not row.ok]
    print("Environment OK: you are ready to start." if not problems else
          f"{len(problems)} problem(s) above: fix them before going on.")
    return not problems
