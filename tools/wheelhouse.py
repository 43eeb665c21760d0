"""Offline wheelhouse: every wheel the course needs, for a chosen platform and Python, in one folder.

    python -m tools.wheelhouse [--out build/classroom/wheelhouse] [--platform this] [--python-version 3.11]
                               [--torch-index URL]

Run it once where the network is good; copy the folder (with the repository) to each machine; there,
`make setup WHEELHOUSE=path/to/wheelhouse` installs with no network at all (`pip install --no-index
--find-links`). Thirty laptops then read one folder instead of pulling the same ~1 GB through one link.

What goes in: every line of requirements.txt (torch pinned) and the packages they depend on, as wheels for the
target (`pip download --only-binary=:all: --platform ... --python-version ...`); the build backend that
requirements.txt's `-e .` needs (pyproject.toml's [build-system] requires, since pip builds the editable install
in an isolated environment that must come from the wheelhouse too); the bertnb wheel itself, for a machine that
has the notebooks but not the repository. Two requirements publish no wheel on PyPI, only a source archive
(`SOURCE_ONLY`); both are pure Python, so the wheel built here fits every platform.

torch. On PyPI the Linux x86_64 wheel of torch 2.13 is the CUDA build (527 MB) and it pulls the nvidia-*
CUDA 13 wheels (several GB more); macOS and Windows wheels on PyPI are CPU builds (111-122 MB). For Linux, pass
PyPI's alternative, PyTorch's CPU index: `--torch-index <the CPU index URL on pytorch.org's "get started" page>`
(its `torch==2.13.0+cpu` satisfies the `torch==2.13.0` pin), or a folder holding a CPU wheel with `--find-links`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from tools.exercises import ROOT

DEFAULT_OUT = ROOT / "build" / "classroom" / "wheelhouse"
# Requirements published on PyPI only as source archives (checked for the pinned versions): built into
# wheels here, before the download, so the platform-restricted `pip download` can take them from the wheelhouse.
SOURCE_ONLY = ("snownlp", "code2flow")


def _manylinux(arch: str) -> list[str]:
    # pip takes a --platform tag literally (manylinux_2_28 does not imply manylinux_2_17): list them all.
    # torch 2.13 needs glibc 2.28 (manylinux_2_28); other packages publish older tags.
    return ([f"manylinux_2_{minor}_{arch}" for minor in range(28, 16, -1)]
            + [f"manylinux2014_{arch}", f"manylinux_2_5_{arch}", f"manylinux1_{arch}"])


def _macos(arch: str, newest: int) -> list[str]:
    own = [f"macosx_{major}_0_{arch}" for major in range(newest, 10, -1)]
    older = [f"macosx_10_{minor}_{arch}" for minor in range(15, 8, -1)] if arch == "x86_64" else []
    universal = [f"macosx_{major}_0_universal2" for major in range(newest, 10, -1)] + [
        f"macosx_10_{minor}_universal2" for minor in range(15, 8, -1)]
    return own + older + universal


# --platform names -> pip platform tags; "this" lets pip use the running interpreter's own tags.
PLATFORMS = {
    "this": [],
    "linux-x86_64": _manylinux("x86_64"),
    "linux-aarch64": _manylinux("aarch64"),
    "macos-arm64": _macos("arm64", 15),
    "macos-x86_64": _macos("x86_64", 15),
    "windows-x86_64": ["win_amd64"],
}


# pip evaluates environment markers (`nvidia-nccl-cu13; platform_system == "Linux"`, `; python_version < "3.12"`)
# for the machine it runs on, not for --platform / --python-version (pip issue #11664): from Linux, torch's Linux-only
# CUDA dependencies would be wanted for Windows too. So pip runs with the target machine's marker values.
TARGET_MARKERS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                     "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                      "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                    "platform_machine": "arm64"},
    "macos-x86_64": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                     "platform_machine": "x86_64"},
    "windows-x86_64": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                       "platform_machine": "AMD64"},
}
# pip, run with `default_environment` (what markers are evaluated against) replaced by the target's values
PIP_FOR_TARGET = """
import json, sys
from pip._vendor.packaging import markers
host, target = markers.default_environment, json.loads(sys.argv[1])
markers.default_environment = lambda: {**host(), **target}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def marker_values(platform: str, python_version: str) -> dict:
    """The environment-marker values of the machines the wheelhouse is for ({} for this machine)."""
    values = dict(TARGET_MARKERS.get(platform, {}))
    if python_version:
        values.update(python_version=python_version, python_full_version=f"{python_version}.0")
    return values


def requirement_lines() -> list[str]:
    """requirements.txt's package lines (no comments, no `-e .`) and the build backend of the editable install."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    packages = [line for line in lines if line and not line.startswith("-")]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    return packages + list(build)


def pip(*args: str, markers: dict | None = None) -> None:
    """Run pip with this interpreter (with the target's marker values when given); a failure stops the command
    with pip's own message above it."""
    command = [sys.executable, "-m", "pip", *args]
    if markers:
        command = [sys.executable, "-c", PIP_FOR_TARGET, json.dumps(markers), *args]
    print("+", " ".join(["pip", *args]), f"(markers: {markers})" if markers else "", flush=True)
    subprocess.run(command, check=True)


def build_source_only(packages: list[str], out: Path) -> None:
    """Build the wheels of the SOURCE_ONLY requirements into `out`, refusing any that is not pure Python."""
    for line in packages:
        name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower()
        if name in SOURCE_ONLY:
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), line)
            built = sorted(out.glob(f"{name.replace('-', '_')}-*.whl"))
            if not built or not built[-1].name.endswith("-none-any.whl"):
                raise RuntimeError(f"{line}: expected a pure-Python wheel (...-none-any.whl), got {built}")


def download(out: Path, platform: str, python_version: str, torch_index: str | None,
             find_links: list[str]) -> list[Path]:
    """Fill `out` with every wheel the course needs for `platform` and `python_version`; returns the wheels."""
    out.mkdir(parents=True, exist_ok=True)
    packages = requirement_lines()
    build_source_only(packages, out)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(packages) + "\n")
    target = [flag for tag in PLATFORMS[platform] for flag in ("--platform", tag)]
    if target or python_version:
        target += ["--python-version", python_version]
    sources = ["--find-links", str(out)] + [flag for folder in find_links for flag in ("--find-links", folder)]
    if torch_index:
        sources += ["--extra-index-url", torch_index]
    pip("download", "--quiet", "--only-binary=:all:", "--dest", str(out), "-r", listing.name, *target, *sources,
        markers=marker_values(platform, python_version))
    Path(listing.name).unlink()
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT))  # bertnb itself
    return sorted(out.glob("*.whl"))


def torch_note(wheels: list[Path]) -> str:
    """One line saying which torch build went in, warning when it is the CUDA build."""
    torch_wheels = [wheel.name for wheel in wheels if wheel.name.startswith("torch-")]
    cuda = [wheel.name for wheel in wheels if wheel.name.startswith("nvidia_")]
    if cuda:
        return f"torch: {torch_wheels} with {len(cuda)} nvidia-* CUDA wheels (pass --torch-index for the CPU build)"
    return f"torch: {torch_wheels}" + (" (CPU build)" if any("+cpu" in name for name in torch_wheels) else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to fill (kept wheels are reused)")
    parser.add_argument("--platform", default="this", choices=sorted(PLATFORMS),
                        help="the machines that will install from it ('this': the machine running the command)")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="their Python, e.g. 3.11 (default: this interpreter's)")
    parser.add_argument("--torch-index", metavar="URL", help="an extra index for torch, e.g. PyTorch's CPU index")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="a folder (or page) of wheels to take from as well, e.g. a CPU torch wheel")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python_version):
        parser.error(f"--python-version must look like 3.11 (major.minor); got {args.python_version!r}")
    same_python = args.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = download(args.out, args.platform, "" if args.platform == "this" and same_python else args.python_version,
                      args.torch_index, args.find_links)
    size = sum(wheel.stat().st_size for wheel in wheels) / 1e6
    print(f"{len(wheels)} wheels, {size:,.0f} MB, in {args.out} (platform {args.platform}, "
          f"Python {args.python_version})")
    print(torch_note(wheels))
    print(f"install with no network:  make setup WHEELHOUSE={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
