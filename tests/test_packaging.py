"""Packaging: the dependency floors past known advisories, requirements.txt mirrors pyproject, version sync."""

from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

import core

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"gradio": "6.31", "pillow": "12.2", "torch": "2.6"}  # gradio: past the advisories, and inputs_kwargs


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_floors_are_declared_and_installed():
    declared = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}
    for name, floor in FLOORS.items():
        assert Version(floor) in declared[name].specifier and Version("0.1") not in declared[name].specifier
        assert Version(version(name)) >= Version(floor), f"installed {name} is older than {floor}"


def space_header() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "the README starts with the Hugging Face Spaces header"
    block = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


def test_requirements_txt_mirrors_runtime_dependencies_with_gradio_pinned_to_the_space():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = {Requirement(line).name: Requirement(line) for line in lines if line and not line.startswith("#")}
    declared = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}
    assert listed.keys() == declared.keys()
    for name, requirement in listed.items():
        if name != "gradio":
            assert str(requirement) == str(declared[name])
    header = space_header()
    assert str(listed["gradio"].specifier) == f"=={header['sdk_version']}"
    assert Version(header["sdk_version"]) in declared["gradio"].specifier
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert header["python_version"].strip('"') == "3.11"


def test_version_and_console_script():
    project = pyproject()["project"]
    assert project["version"] == core.__version__ == version("ddpm-explorer")
    assert project["scripts"]["ddpm"] == "core.cli:main"
