"""The tidy results table every figure and table of the book is computed from.

One row per (run, benchmark, metric) with value, n, CI and provenance, after
lm-evaluation-harness's result schema. Rows live in a JSON Lines file. Writes are atomic
(temp file, then rename) under a file lock, so parallel workers and a kill at any moment
never leave a half-written table, and a run whose `run_id` is recorded is never recorded
twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_TABLE = Path("results") / "results.jsonl"


def run_id(config: Mapping[str, Any]) -> str:
    """A short stable hash of a run's configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ResultsTable:
    """Append-only tidy rows in a JSON Lines file, keyed by run_id."""

    def __init__(self, path: str | os.PathLike = DEFAULT_TABLE):
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows())

    def run_ids(self) -> set[str]:
        return {r["run_id"] for r in self.rows()}

    def has(self, rid: str) -> bool:
        return rid in self.run_ids()

    def record(self, rid: str, rows: Iterable[Mapping[str, Any]],
               common: Mapping[str, Any] | None = None) -> bool:
        """Add a run's rows unless the run is recorded already; returns whether it wrote."""
        stamp = {"run_id": rid, "git_sha": git_sha(), "timestamp": now(), **(common or {})}
        new = [{**stamp, **row} for row in rows]
        with _locked(self.path):
            existing = self.path.read_text() if self.path.exists() else ""
            if any(json.loads(line)["run_id"] == rid for line in existing.splitlines()
                   if line.strip()):
                return False
            body = existing + "".join(json.dumps(r, default=_json_default) + "\n" for r in new)
            atomic_write_text(self.path, body)
        return True


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers see old or new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike):
    """Yield a temporary sibling of `out` to write into; on success it replaces `out`.

    A failure (or a kill) leaves `out` as it was and removes the temporary directory.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def eval_rows(report, model: str, seed: int) -> list[dict[str, Any]]:
    """Tidy rows from an EvalReport: one per benchmark/metric, plus the paper's AVG."""
    rows = [
        {"model": model, "seed": seed, "benchmark": r["benchmark"], "metric": r["metric"],
         "value": float(r["value"]), "ci_low": float(r["ci_low"]),
         "ci_high": float(r["ci_high"]), "n": int(r["n"])}
        for r in report.scores.to_dict("records")
    ]
    summary = report.summary()
    if "AVG" in summary:
        rows.append({"model": model, "seed": seed, "benchmark": "AVG", "metric": "paper",
                     "value": float(summary["AVG"]), "ci_low": None, "ci_high": None,
                     "n": int(report.scores["n"].sum())})
    return rows
