"""Where every benchmark writes its figures: one JSON file, folders created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_figures(out: Path | None, figures: dict[str, Any], *, announce: bool = True) -> None:
    """Write ``figures`` as indented JSON to ``out`` (nothing when ``None``); say so unless told not to."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if announce:
        print(f"wrote {out}", flush=True)
