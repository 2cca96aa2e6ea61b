"""Packaging: the dependency floors past known advisories, requirements.txt mirrors pyproject, version sync."""

from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

import core

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"gradio": "6.16", "pillow": "12.2", "torch": "2.6"}


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_floors_are_declared_and_installed():
    declared = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}
    for name, floor in FLOORS.items():
        assert Version(floor) in declared[name].specifier and Version("0.1") not in declared[name].specifier
        assert Version(version(name)) >= Version(floor), f"installed {name} is older than {floor}"


def test_requirements_txt_mirrors_runtime_dependencies():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = {Requirement(line) for line in lines if line and not line.startswith("#")}
    declared = {Requirement(r) for r in pyproject()["project"]["dependencies"]}
    assert {str(r) for r in listed} == {str(r) for r in declared}


def test_version_and_console_script():
    project = pyproject()["project"]
    assert project["version"] == core.__version__ == version("ddpm-explorer")
    assert project["scripts"]["ddpm"] == "core.cli:main"
