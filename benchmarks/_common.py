"""What several benchmark scripts share: a mean ± spread over seeds and the JSON record of a run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def mean_std(values, decimals: int = 3) -> str:
    """'mean ± sample standard deviation' of the values that are not None; a single value alone (one seed has
    no spread to show)."""
    values = [v for v in values if v is not None]
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.mean(values):.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def write_json(path, record: dict) -> Path:
    """Write `record` to `path` (folders made as needed) and say where it went."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return out
