"""Where the files a chapter reads at run time live: inside the installed package, so a Colab or pip user
who has the wheel and one notebook, not the repository, has them too.

`bertnb/assets/` holds the frozen English corpus and the small committed checkpoints. They are package data
(pyproject.toml), found with `importlib.resources`, which works the same in a checkout (editable install)
and in an installed wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# The committed checkpoints, by name (bertnb/assets/checkpoints/NAME); `checkpoints/README.md` says how each
# was made.
CHECKPOINTS = {"en": "en-python-docs", "zh": "zh-peoples-daily"}


def asset_path(*parts: str) -> Path:
    """The path of a packaged file, e.g. asset_path("python_docs.jsonl"). Existence is checked by the caller
    (`require_asset`), so a module can name its files at import time.
    Built in chapter 07."""
    return Path(str(resources.files("bertnb").joinpath("assets", *parts)))


def require_asset(*parts: str) -> Path:
    """asset_path(...), or a FileNotFoundError that says how to get the file back. Built in chapter 07."""
    path = asset_path(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing from the installed bertnb package. Reinstall it (pip install --force-reinstall "
            f"'bertnb[data,reference] @ git+<the course repository>'), or in a checkout restore it with "
            f"`git checkout -- bertnb/assets`.")
    return path


def checkpoint_dir(name: str) -> Path:
    """The folder of a committed checkpoint: "en" / "en-python-docs" or "zh" / "zh-peoples-daily".
    Built in chapter 07."""
    folder = CHECKPOINTS.get(name, name)
    if folder not in CHECKPOINTS.values():
        raise ValueError(f"unknown checkpoint {name!r}: allowed {sorted(CHECKPOINTS) + sorted(CHECKPOINTS.values())}")
    return require_asset("checkpoints", folder, "model.safetensors").parent
