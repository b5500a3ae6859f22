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
import math
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from studylib.errors import StudyError
from studylib.outputs import atomic_write_text

DEFAULT_TABLE = Path("results") / "results.jsonl"
# Columns every row of a study has (the stamp, then `StudyParams.common`'s identity): an empty
# table is a frame with them, so that selecting from it needs no special case.
COLUMNS = ("run_id", "git_sha", "timestamp", "study", "model", "arch", "method", "ratio",
           "benchmark", "metric", "value")


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
        """Every row ([] when the file is missing); a file that is not JSON Lines is one
        StudyError line naming the file and the first bad line, before any work is done."""
        return _parse(self.path, self._text())

    def _text(self) -> str:
        if not self.path.exists():
            return ""
        if self.path.is_dir():
            raise StudyError(f"results table {self.path} is a directory, not a JSON Lines file")
        try:
            return self.path.read_text()
        except UnicodeDecodeError:
            raise StudyError(f"{self.path} is not a JSON Lines results table (not UTF-8 "
                             "text)") from None

    def frame(self) -> pd.DataFrame:
        rows = self.rows()
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS))

    def run_ids(self) -> set[str]:
        return {r.get("run_id") for r in self.rows()}

    def has(self, rid: str) -> bool:
        return rid in self.run_ids()

    def record(self, rid: str, rows: Iterable[Mapping[str, Any]],
               common: Mapping[str, Any] | None = None) -> bool:
        """Add a run's rows unless the run is recorded already; returns whether it wrote."""
        stamp = {"run_id": rid, "git_sha": git_sha(), "timestamp": now(), **(common or {})}
        new = [{**stamp, **row} for row in rows]
        with _locked(self.path):
            existing = self._text()
            if any(r.get("run_id") == rid for r in _parse(self.path, existing)):
                return False
            body = existing + "".join(_json_line(r) for r in new)
            atomic_write_text(self.path, body)
        return True


def _parse(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StudyError(f"{path} is not a JSON Lines results table (line {number}: "
                             f"{exc.msg})") from None
        if not isinstance(row, dict):
            raise StudyError(f"{path} is not a JSON Lines results table (line {number}: "
                             f"a {type(row).__name__}, not an object)")
        rows.append(row)
    return rows


def _json_line(row: Mapping[str, Any]) -> str:
    """One row as strict JSON: NaN and infinities (not JSON) become null."""
    def finite(v):
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return None if isinstance(v, float) and not math.isfinite(v) else v

    plain = json.loads(json.dumps(row, default=_json_default))  # numpy scalars -> Python
    return json.dumps(finite(plain), allow_nan=False) + "\n"


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def items_scored(scores: pd.DataFrame) -> int:
    """How many items an EvalReport's score rows cover: each benchmark once, by its headline
    row, though it has several metrics."""
    return int(scores.n[scores.metric == "score"].sum())


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
                     "n": items_scored(report.scores)})
    return rows
