"""The classroom kit end to end, too slow for `make test` (about 15 minutes on 2 cores; CI runs it after it):

1. solved copies: every chapter with its stubs replaced by the reference solutions, run in fast mode, offline;
   every cell runs and every exercise's check prints "correct";
2. nbgrader: the release of the small chapter 02 goes through `nbgrader generate_assignment` (the released cells
   are the chapter's own stubs) and `nbgrader autograde`: a submission holding the solutions scores full marks,
   the unsolved release scores 0. nbgrader is not a course requirement: it is installed into its own venv,
   build/nbgrader-venv, whose kernel also sees the course venv (a .pth line);
3. wheelhouse: `python -m tools.wheelhouse` for this machine, then `make setup WHEELHOUSE=...` into a fresh venv
   with the network cut (a network namespace with only loopback, `unshare -n`, where the system allows it; the
   course's Python guard, tests/offline/sitecustomize.py, in every case) and pip's own configuration ignored, so
   the wheelhouse is the only source; the new venv then imports everything, loads MiniLM and passes a test file.

    python -m tests.run_classroom_check                 (what `make test-classroom` runs)
    python -m tests.run_classroom_check solved nbgrader (only these steps: solved, nbgrader, wheelhouse)
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from tools.exercises import find_stubs

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "classroom-check"
NBGRADER_VENV = ROOT / "build" / "nbgrader-venv"
NBGRADER = "nbgrader==0.9.6"  # works with JupyterLab 4 and the course's pins (checked with pip --dry-run)
SMALL_CHAPTER = "02_embeddings.ipynb"
# this checkout's bertnb first (in every kernel too), and the network cut in every Python process
OFFLINE = {"BERTNB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'offline'}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}


def run(command: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.run([str(part) for part in command], check=True, env=env, cwd=kwargs.pop("cwd", ROOT),
                          **kwargs)


def with_env(**extra) -> dict:
    return {**os.environ, **extra}


def step_solved() -> None:
    """Every solved copy runs clean with every check correct (tools.solved_copies fails otherwise)."""
    run([sys.executable, "-m", "tools.solved_copies", "--fast", "--out", WORK / "solved"], env=with_env(**OFFLINE))


def nbgrader_python() -> Path:
    """build/nbgrader-venv's python, made on first use; its kernel also imports the course venv's packages."""
    python = NBGRADER_VENV / "bin" / "python"
    if not python.exists():
        run([sys._base_executable, "-m", "venv", NBGRADER_VENV])
        run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", NBGRADER])
    site_packages = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    course = next(path for path in sys.path if path.endswith("site-packages"))
    # addsitedir (not a bare path) so the course venv's own .pth files run too: its editable bertnb
    (Path(site_packages) / "zz_bertnb_course_venv.pth").write_text(f"import site; site.addsitedir({course!r})\n")
    return python


def step_nbgrader() -> None:
    """generate_assignment gives back the chapter's stubs; autograde gives full marks to the solutions, 0 to stubs."""
    python = nbgrader_python()
    course = WORK / "nbgrader"
    shutil.rmtree(course, ignore_errors=True)
    run([sys.executable, "-m", "tools.nbgrader_release", "--out", course])
    env = with_env(**OFFLINE, PATH=f"{python.parent}{os.pathsep}{os.environ['PATH']}", BERTNB_FAST="1")
    nbgrader = [python, "-m", "nbgrader"]
    run([*nbgrader, "generate_assignment", "ch02", "--force"], env=env, cwd=course)

    released = nbformat.read(course / "release" / "ch02" / SMALL_CHAPTER, as_version=4)
    chapter_path = ROOT / "notebooks" / SMALL_CHAPTER
    chapter = nbformat.read(chapter_path, as_version=4)
    stub_cells = sorted({stub.cell_index for stub in find_stubs(chapter_path)})
    stubs = [chapter.cells[index].source for index in stub_cells]
    answers = [cell.source for cell in released.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert answers == stubs, f"the released answer cells differ from the chapter's stubs:\n{answers}\n{stubs}"

    for student, source in (("solved", course / "source"), ("unsolved", course / "release")):
        (course / "submitted" / student / "ch02").mkdir(parents=True)
        shutil.copy(source / "ch02" / SMALL_CHAPTER, course / "submitted" / student / "ch02" / SMALL_CHAPTER)
    run([*nbgrader, "autograde", "ch02", "--create", "--force"], env=env, cwd=course)
    run([*nbgrader, "export", "--to", course / "grades.csv"], env=env, cwd=course)
    scores = {row["student_id"]: (float(row["score"]), float(row["max_score"]))
              for row in csv.DictReader((course / "grades.csv").open())}
    print("nbgrader scores:", scores)
    points = scores["solved"][1]
    assert points == len(stubs) and scores == {"solved": (points, points), "unsolved": (0.0, points)}, scores


def network_cut_prefix() -> list[str]:
    """`unshare -n` (a network namespace holding only loopback) where this system allows it, else nothing."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    print("unshare -n is not permitted here (it needs root or user namespaces): only the Python guard cuts the "
          "network")
    return []


def step_wheelhouse() -> None:
    """Build a wheelhouse for this machine, install from it alone into a fresh venv offline, and use that venv."""
    house, venv = WORK / "wheelhouse", WORK / "offline-venv"
    run([sys.executable, "-m", "tools.wheelhouse", "--out", house])  # reuses the wheels a previous run left
    shutil.rmtree(venv, ignore_errors=True)
    # Only the wheelhouse: pip's configuration files and PIP_* variables (extra indexes, find-links) are dropped.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(OFFLINE, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    offline = network_cut_prefix()
    start = time.perf_counter()
    run([*offline, "make", "setup", f"VENV={venv}", f"WHEELHOUSE={house}", f"PYTHON={sys._base_executable}"],
        env=env)
    print(f"installed from the wheelhouse, offline, in {time.perf_counter() - start:.0f} s")
    python = venv / "bin" / "python"
    smoke = ("import torch, transformers, onnxruntime, snownlp, code2flow, nbval, jupyterlab\n"
             "from bertnb.pretrained import load_minilm\n"
             "model, tokenizer = load_minilm()\n"
             "print('torch', torch.__version__, '| MiniLM ids:', tokenizer.encode('an offline classroom')[0])\n")
    run([*offline, python, "-c", smoke], env=env)
    run([python, "-m", "pip", "check"], env=env)
    run([*offline, python, "-m", "pytest", "tests/test_validation.py", "-q", "-p", "no:cacheprovider"], env=env)
    shutil.rmtree(venv)  # about 2 GB


STEPS = {"solved": step_solved, "nbgrader": step_nbgrader, "wheelhouse": step_wheelhouse}


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in STEPS]
    if unknown:
        sys.exit(f"unknown step(s) {unknown}: choose from {list(STEPS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    for name in argv or list(STEPS):
        start = time.perf_counter()
        what = re.sub(r"\s+", " ", STEPS[name].__doc__)
        print(f"== {name}: {what}", flush=True)
        STEPS[name]()
        print(f"== {name}: passed in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
