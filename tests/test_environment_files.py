"""The three install files agree (requirements.txt for a venv, pyproject.toml for pip, environment.yml for
Binder/conda), the repository address is written once, and the notebooks store the kernel the venv installs."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# requirements/pyproject name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch-cpu"}
# in environment.yml only, each for a reason: the interpreter, pip itself, a real `dot` for bertnb.flow on Binder,
# and the proxy that shows Netron behind Binder's hub
ENVIRONMENT_ONLY = {"python", "pip", "graphviz", "jupyter-server-proxy"}
# torch is pinned exactly for a plain venv (a loose torch pulls the CUDA build) and left loose for pip users
# (Colab keeps its own torch); conda-forge's CPU build is named without a version
DIFFERENT_SPEC_ON_PURPOSE = {"torch"}


def split_requirement(line: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", line.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def requirements() -> dict:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(split_requirement(line) for line in lines if line.strip() and not line.startswith(("#", "-")))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_requirements() -> dict:
    project = pyproject()["project"]
    lines = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return dict(split_requirement(line) for line in lines)


def environment() -> dict:
    """environment.yml's conda and pip entries (a small reader: the file is a flat list)."""
    entries = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = re.match(r"^\s+- ([^#]+?)\s*(?:#.*)?$", line)
        if item and item.group(1) not in ("pip:", "-e .", "conda-forge") and not item.group(1).startswith("-e"):
            text = item.group(1).replace("=", "==", 1) if re.match(r"^python=\d", item.group(1)) else item.group(1)
            name, spec = split_requirement(text)
            entries[name] = spec
    return entries


def test_requirements_and_pyproject_name_the_same_packages_with_the_same_versions():
    venv, package = requirements(), pyproject_requirements()
    assert venv.keys() == package.keys()
    for name in venv.keys() - DIFFERENT_SPEC_ON_PURPOSE:
        assert venv[name] == package[name], name
    assert venv["torch"] == "==2.13.0" and package["torch"].startswith(">=")


def test_environment_yml_matches_through_the_name_map():
    venv, conda = requirements(), environment()
    expected = {CONDA_NAMES.get(name, name) for name in venv}
    assert conda.keys() - ENVIRONMENT_ONLY == expected
    for name, spec in venv.items():
        if name not in DIFFERENT_SPEC_ON_PURPOSE:
            assert conda[CONDA_NAMES.get(name, name)] == spec, name
    assert "-e ." in (ROOT / "environment.yml").read_text()  # Binder installs the package itself


def test_the_package_declares_what_it_needs_to_build():
    build = pyproject()["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)  # SPDX license
    data = pyproject()["tool"]["setuptools"]["package-data"]["bertnb"]
    assert any("checkpoints" in pattern for pattern in data) and any("jsonl" in pattern for pattern in data)


# --------------------------------------------------------------------------------------------------------
# One repository address


def repository() -> tuple[str, str]:
    project = pyproject()["project"]
    return project["urls"]["Repository"], f"v{project['version']}"


def test_every_setup_cell_installs_from_the_one_address_pinned_to_the_version_tag():
    url, tag = repository()
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert f"@ git+{url}@{tag}\"" in setup, path.name
        assert "import bertnb" in setup and "except ModuleNotFoundError" in setup, path.name  # installs only if missing
        assert setup.count("git+") == 1, path.name


def test_readme_links_use_the_one_address():
    url, tag = repository()
    owner_repo = url.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    assert f"https://mybinder.org/v2/gh/{owner_repo}/{tag}?" in readme
    assert f"https://colab.research.google.com/github/{owner_repo}/blob/{tag}/notebooks/" in readme
    other = {m for m in re.findall(r"github\.com/([\w.-]+/[\w.-]+)", readme)} - {owner_repo}
    assert not other, other


# --------------------------------------------------------------------------------------------------------
# Stored kernel metadata: JupyterLab marks a notebook modified on open when it differs from the installed kernel


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_store_the_installed_kernel(path):
    from jupyter_client.kernelspec import KernelSpecManager

    stored = json.loads(path.read_text())["metadata"]["kernelspec"]
    installed = KernelSpecManager().get_kernel_spec(stored["name"])
    assert stored == {"name": "python3", "display_name": installed.display_name, "language": installed.language}
