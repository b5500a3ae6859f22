"""Grid cells, computed once and found again by their content.

A **cell** is one evaluated model of the grid loop (`studylib.study.grid.students`): the
teacher, a pruned model, or a pruned and recovered one. Its key is a hash of everything that
decides its numbers:

- the teacher's weights (`teacher_fingerprint`: a hash of every tensor of the in-memory
  model);
- what was done to it: method, importance, requested ratio, calibration size, the recipe
  (every field of `RecoveryRecipe`), data fraction, step cap, the replicate seed;
- the evaluation: items per benchmark, evaluation seed, batch size, dtype and device;
- **the code that produces a cell** (`code_version()`): every `.py` file under
  `studylib/compress`, `studylib/models`, `studylib/evaluation` and `studylib/testbed`,
  plus `studylib/study/grid.py`, this file and `studylib/training.py`, and the versions
  of torch, transformers, peft and torch-pruning; but not how teachers are trained and
  timed (`NOT_CELL_CODE`): a cell starts from the teacher's weights, which its key hashes,
  and no cell code imports those modules (a test checks). An edit to any of them gives every
  cell a new key, so nothing computed by older code is reused. The chapters, the
  analysis and the book are not in it: changing how a result is judged or drawn does
  not recompute it.

The thread count is not in the key: it changes float rounding, not what is computed.

A cell is stored as one gzipped JSON file `<root>/<key>.json.gz` (default root
`results/cells/`, beside the results table): the evaluation (per-benchmark scores with
their CIs and every item's prediction), the pruning and recovery reports, and the parameter
counts. It is written atomically, so a kill leaves the old state or the whole cell. Two
notebooks that need the same cell at the same time take its lock in turn: the second reads
what the first wrote instead of computing it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CELL_CODE = ("compress", "models", "evaluation", "testbed", "study/grid.py", "study/cells.py",
             "training.py")
NOT_CELL_CODE = ("testbed/teachers.py", "testbed/vision_pretrain.py",
                 "testbed/fingerprint.py", "testbed/speed.py")
LIBRARIES = ("torch", "transformers", "peft", "torch_pruning")
PACKAGE = Path(__file__).resolve().parents[1]


def _tree_hash(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in sorted(paths):
        h.update(str(f.relative_to(PACKAGE)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _py_files(parts: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for part in parts:
        p = PACKAGE / part
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    skip = {PACKAGE / f for f in NOT_CELL_CODE}
    return [f for f in files if f not in skip]


@functools.cache
def code_version() -> str:
    """A hash of the code that produces a cell (`CELL_CODE`) and the libraries' versions."""
    from importlib.metadata import version

    libs = ",".join(f"{name}={version(name.replace('_', '-'))}" for name in LIBRARIES)
    return _tree_hash(_py_files(CELL_CODE), libs)


@functools.cache
def package_version() -> str:
    """A hash of every `.py` file of studylib: a chapter run's identity includes it, so a
    chapter re-executes after any library change (its cells are still reused)."""
    return _tree_hash(_py_files(("",)))


def cell_key(fields: Mapping[str, Any]) -> str:
    """The content hash of a cell: its fields plus the code version."""
    blob = json.dumps({**fields, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CellCache:
    """Cells under `root`, one gzipped JSON file each, keyed by `cell_key`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.computed = 0

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json.gz"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.exists():
            return None
        with gzip.open(path, "rt") as f:
            return json.load(f)

    def put(self, key: str, cell: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        with gzip.open(tmp, "wt") as f:
            json.dump(cell, f, default=_jsonable)
        os.replace(tmp, self.path(key))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while a cell is computed: another process asking for it waits, then reads."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

