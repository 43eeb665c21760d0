"""The user's path: build the wheel, install it (not editable) in a clean virtual environment, and run every
chapter alone, copied into an empty folder, with that environment's kernel, in fast mode and offline.

This is what a Colab or pip user has: the wheel and one notebook, no repository beside it. A chapter that
reads a file through the repository's layout, or a package file not declared as package data, fails here.

    python -m tests.run_wheel_check            (what `make test-wheel` runs; CI runs it after `make test`)
    python -m tests.run_wheel_check 05 07      (only these chapters)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "wheel-check"
MAX_WHEEL_BYTES = 20_000_000
TORCH = "torch==2.13.0"  # the venv pin of requirements.txt: a loose torch would pull the CUDA build

# Run inside the clean environment: execute one notebook in its own folder, then report where bertnb came from.
RUNNER = r"""
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
notebook.cells.append(nbformat.v4.new_code_cell("import bertnb; print('BERTNB_FROM', bertnb.__file__)"))
NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print(notebook.cells[-1].outputs[0]["text"].strip())
"""


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, check=True, **kwargs)


def build_wheel() -> Path:
    out = BUILD / "dist"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)])
    wheel = next(out.glob("bertnb-*.whl"))
    size = wheel.stat().st_size
    names = zipfile.ZipFile(wheel).namelist()
    missing = [f for f in ("bertnb/assets/python_docs.jsonl", "bertnb/assets/checkpoints/en-python-docs/model.safetensors",
                           "bertnb/assets/checkpoints/zh-peoples-daily/vocab.txt") if f not in names]
    if missing or size > MAX_WHEEL_BYTES:
        sys.exit(f"{wheel.name}: {size:,} bytes (limit {MAX_WHEEL_BYTES:,}); package data missing: {missing}")
    print(f"{wheel.name}: {size / 1e6:.1f} MB, {len(names)} files, package data present", flush=True)
    return wheel


def make_environment(wheel: Path) -> Path:
    env = BUILD / "env"
    shutil.rmtree(env, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(env)])
    python = env / "bin" / "python"
    # what a Colab user's kernel has: the wheel with its extras, and a kernel to run a notebook (not JupyterLab)
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TORCH,
         f"{wheel}[data,reference,export]", "ipykernel>=6.29", "nbclient>=0.10", "nbformat>=5.9"])
    return python


def check_chapter(python: Path, notebook: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="bertnb-chapter-") as folder:  # the notebook alone, no repository
        copy = Path(folder) / notebook.name
        shutil.copy(notebook, copy)
        env = {**os.environ, "BERTNB_FAST": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "BERTNB_OFFLINE": "1",
               "PYTHONPATH": str(ROOT / "tests" / "offline"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        start = time.perf_counter()
        result = run([str(python), "-c", RUNNER, str(copy), folder], env=env, cwd=folder, capture_output=True,
                     text=True)
        origin = result.stdout.strip().splitlines()[-1].removeprefix("BERTNB_FROM ")
        if not Path(origin).resolve().is_relative_to(python.parent.parent.resolve() / "lib"):  # env's site-packages
            sys.exit(f"{notebook.name} imported bertnb from {origin}, not from the installed wheel")
        return time.perf_counter() - start


def main(chapters: list[str]) -> int:
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if chapters:
        notebooks = [n for n in notebooks if n.name[:2] in chapters]
    python = make_environment(build_wheel())
    failed = []
    for notebook in notebooks:
        try:
            print(f"{notebook.name}: passed in {check_chapter(python, notebook):.0f} s, bertnb from the wheel",
                  flush=True)
        except subprocess.CalledProcessError as error:
            failed.append(notebook.name)
            print(f"{notebook.name}: FAILED\n{(error.stderr or '')[-3000:]}", flush=True)
    print(f"{len(notebooks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
