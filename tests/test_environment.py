"""environment.yml (for conda users) and pyproject.toml (for pip) describe one environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES: dict[str, str] = {}


def _requirement(text: str) -> tuple[str, str]:
    # pip's extras (`psycopg[binary]`) have no conda spelling: the package name is what counts.
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*?)\s*", text)
    assert match, f"cannot read requirement {text!r}"
    return match.group(1).lower(), match.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return dict(_requirement(line) for line in lines)


def conda_requirements() -> dict[str, str]:
    """The plain `- name spec` entries of environment.yml's dependencies (not pip's)."""
    found: dict[str, str] = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps and re.match(r"^  - [A-Za-z]", line):
            name, spec = _requirement(line[4:])
            found[name] = spec
        elif in_deps and line and not line.startswith(" "):
            in_deps = False
    return found


def test_every_pip_requirement_is_in_environment_yml_with_the_same_bound() -> None:
    conda = conda_requirements()
    for name, spec in pyproject_requirements().items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[conda_name] == spec, (
            f"{name}: pyproject.toml says {spec!r}, environment.yml {conda[conda_name]!r}"
        )


def test_environment_yml_has_nothing_pyproject_lacks() -> None:
    pip_names = {CONDA_NAMES.get(n, n) for n in pyproject_requirements()}
    extra = set(conda_requirements()) - pip_names - {"python", "pip"}
    assert not extra, f"only in environment.yml: {sorted(extra)}"


def test_python_version_agrees() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda_requirements()["python"] == project["requires-python"]
