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
from studylib.testbed import plan

# The "100%" recovery set: 4000 images x 3 turns = 12,000 question/answer pairs.
DEFAULT_DATA = dict(n_images=4000, turns=3, seed=0)
# It is drawn as the teachers' own instruction data, the closing mix of their plans
# (`plan.PLANS`: open and spatial shares, MME's "no" questions against decoys, the benchmarks'
# occluded world, no descriptions), as LLaVA-1.5 is recovered on its own SFT mix. The recipe's
# instruct set, the earlier default (descriptions as turn 1 in half the records, full view),
# holds text the teachers were never finished on: 13 steps of `sft` on 5% of it cost a
# 15%-layer-pruned toy-llava 6.5 AVG points (66.3 -> 59.8, 200 items per benchmark, loss
# 4.1) and a 30%-width-pruned toy-bunny 2.6, where 13 steps on this mix cost 1.3 and 0.3
# (loss 0.3-0.4; docs/testbed-recipe-search.md, "Recovery on the teachers' own data").
RECOVERY_MIX = "mix:1:bs={n}:open=0.1:spatial=0.4:decoys=1:turns={turns}"


def training_records(n_images: int = DEFAULT_DATA["n_images"], turns: int = DEFAULT_DATA["turns"],
                     seed: int = DEFAULT_DATA["seed"]) -> list[dict[str, Any]]:
    """The default ("100%") recovery set in LLaVA format (images render on demand):
    `n_images` records of `RECOVERY_MIX`, data seed `seed`."""
    (stage,) = plan.parse(RECOVERY_MIX.format(n=n_images, turns=turns))
    return plan.stage_records(stage, seed)


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
