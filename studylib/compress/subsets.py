"""The recovery data: the default ("100%") set and its seeded, nested subsets (5% is inside 10% is inside 20%)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studylib.errors import StudyError, check_fraction
from studylib.testbed import instructions

# The "100%" recovery set: 4000 images x 3 turns = 12,000 question/answer pairs.
DEFAULT_DATA = dict(n_images=4000, turns=3, seed=0)


def training_records(n_images: int = DEFAULT_DATA["n_images"], turns: int = DEFAULT_DATA["turns"],
                     seed: int = DEFAULT_DATA["seed"]) -> list[dict[str, Any]]:
    """The default ("100%") recovery set in LLaVA format (images render on demand)."""
    return instructions.instruction_set(n_images, turns=turns, seed=seed)


@dataclasses.dataclass(frozen=True)
class Subset:
    fraction: float
    seed: int
    n_total: int
    indices: tuple[int, ...]
    hash: str  # sha256 of the selected records' content (order of `indices`)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "n_total": self.n_total,
                "n": len(self.indices), "hash": self.hash, "indices": list(self.indices)}


def _records_hash(records: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True).encode())
    return h.hexdigest()


def select_subset(records: Sequence[dict[str, Any]], fraction: float, seed: int = 0) -> Subset:
    """A seeded subset of `round(fraction * n)` records (at least 1); nested across fractions."""
    fraction = check_fraction(fraction)
    n = len(records)
    if n == 0:
        raise StudyError("no training records")
    k = max(1, round(fraction * n))
    order = random.Random(seed).sample(range(n), n)
    indices = tuple(sorted(order[:k]))
    return Subset(fraction, seed, n, indices, _records_hash([records[i] for i in indices]))


def load_subset(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> Subset:
    """Reuse a saved subset.json; its hash must match these records (else the data changed)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"subset file not found: {path}")
    try:
        d = json.loads(path.read_text())
        indices = tuple(int(i) for i in d["indices"])
        subset = Subset(float(d["fraction"]), int(d["seed"]), int(d["n_total"]), indices,
                        str(d["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path} is not a subset file ({type(exc).__name__}: {exc})") from None
    if subset.n_total != len(records) or max(indices, default=-1) >= len(records) or \
            _records_hash([records[i] for i in indices]) != subset.hash:
        raise StudyError(f"{path} does not match the training records (hash differs)")
    return subset
