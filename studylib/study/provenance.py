"""Provenance: what a run's identity and its rows record about where they came from.

`checkpoint_fingerprint` and `results_fingerprint` go into a run's `run_id` (a retrained
teacher, or new upstream rows for a chapter that reads them, make a new run);
`environment` is recorded beside every result row and read back by the book's provenance
page.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studylib import machine
from studylib.results import ResultsTable


def results_fingerprint(path: str, studies: Sequence[str]) -> str:
    """A short hash of the run_ids recorded for `studies` in a results table."""
    rows = ResultsTable(path).rows() if Path(path).is_file() else []
    ids = sorted({r["run_id"] for r in rows if r.get("study") in studies})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16] if ids else "none"


def checkpoint_fingerprint(path: Path) -> str:
    """A short hash of a checkpoint's weights (size+mtime for very large files), so a
    retrained teacher at the same path gets a new run_id; the path itself if absent."""
    if not path.is_dir():
        return f"missing:{path}"
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("config.json")):
        stat = f.stat()
        digest.update(f.name.encode())
        if stat.st_size > 256 * 2**20:
            digest.update(f"{stat.st_size}:{int(stat.st_mtime)}".encode())
        else:
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions and machine facts recorded beside every result row (the provenance page)."""
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "host": platform.node(),
            "machine": machine.line(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": threads, "git_dirty": git_dirty()}


def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (a run's git_sha alone would hide it)."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None
