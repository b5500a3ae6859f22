"""Paired evaluation noise: the models of a claim resampled on the same items.

Every model of the study is scored on the same seeded items, so two models' item outcomes
are correlated: a hard item is hard for both. The evaluation noise of their *difference* is
then smaller than the two models' own noises added as for independent models, which is
what the CI rule assumed before (`evidence.compare` without `noise`).

`PairedNoise.se(a, b, scale)` bootstraps the items once per draw and applies that draw to
every model of the claim, the teachers included:

- a draw resamples groups (an MME image's question pair, else one item) within their
  stratum (POPE split, MME subtask), exactly as `metrics.score_with_ci` does for one model;
- POPE's F1 and MME's acc + acc+ are recomputed on the draw (`metrics._from_counts`);
- each model's AVG-% is formed from the six scores as the point estimate is
  (`metrics.average` over the teacher's `metrics.average` on the same draw);
- the per-seed differences of AVG-% are taken on every draw, and se_eval is the root of
  the part of their variance that the seeds share (`shared_variance`): the part the seed
  spread of the differences cannot see, so the rule adds it without counting twice what
  the seed spread already holds (the issue-27 simulation, `analysis.simulate`, found the
  whole variance over-covering).

The items come from the grid cells (`studylib.study.cells`): each evaluation row names its
cell (`cell`) and its teacher's (`teacher_cell`). A claim whose rows do not all name one
(an interpolated ratio, rows written before cells were named) gets None, and the caller
keeps the unpaired rule.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.evaluation import metrics

N_BOOT = 1000  # bootstrap draws per claim


class ItemCounts:
    """One evaluated model's group counts per benchmark (`metrics._group_counts`), with the
    item ids that fix the group order (all models of a claim must share it)."""

    def __init__(self, items: pd.DataFrame):
        self.counts, self.ids = {}, {}
        for bench in metrics.PAPER_KEYS:
            rows = items[items.benchmark == bench].to_dict("records")
            self.counts[bench] = metrics._group_counts(bench, rows)
            self.ids[bench] = tuple(r["id"] for r in rows)

    def scores(self, draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each benchmark's headline score on every draw (rows of `draws[bench]`)."""
        return {b: metrics._from_counts(b, "score", self.counts[b], d) for b, d in draws.items()}

    def avg(self, draws: dict[str, np.ndarray]) -> np.ndarray:
        """The paper's AVG on every draw."""
        return metrics.average(self.scores(draws))


def draws(template: ItemCounts, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, np.ndarray]:
    """Row 0: every group once (the point estimate); rows 1..n_boot: stratified resamples
    of the groups (`metrics.score_with_ci`'s design)."""
    rng = np.random.default_rng(seed)
    out = {}
    for bench, counts in template.counts.items():
        everything = np.arange(len(counts["items"]))
        strata = [everything[counts["stratum"] == s] for s in dict.fromkeys(counts["stratum"])]
        rows = [everything]
        for _ in range(n_boot):
            rows.append(np.concatenate([rng.choice(g, size=len(g)) for g in strata]))
        out[bench] = np.stack(rows)
    return out


def _pct(pairs: Sequence[tuple[ItemCounts, ItemCounts]], d: dict[str, np.ndarray]
         ) -> np.ndarray:
    """100 x AVG(model) / AVG(teacher) per draw (rows) and seed (columns)."""
    return np.stack([metrics.pct_of_teacher(m.avg(d), t.avg(d)) for m, t in pairs], axis=1)


def paired_difference(a: Sequence[tuple[ItemCounts, ItemCounts]],
                      b: Sequence[tuple[ItemCounts, ItemCounts]] | None = None,
                      scale: float = 1.0, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Per seed, AVG-% of a - scale x AVG-% of b, on the point estimate (row 0) and on
    `n_boot` draws shared by every model (rows 1..); a and b are (model, teacher) item
    counts, one per seed, b's in a's seed order. All must share the items (ValueError
    otherwise)."""
    everyone = [c for pair in [*a, *(b or [])] for c in pair]
    for c in everyone[1:]:
        if c.ids != everyone[0].ids:
            raise ValueError("the models of a claim were not scored on the same items")
    if b and len(b) != len(a):
        raise ValueError(f"{len(a)} seeds on one side, {len(b)} on the other")
    d = draws(everyone[0], n_boot, seed)
    diff = _pct(a, d)
    return diff - scale * _pct(b, d) if b else diff


def shared_variance(per_seed: np.ndarray) -> float:
    """The evaluation variance of a claim's d that its seeds share (`per_seed`: draws x
    seeds, the draws' rows only).

    A per-seed difference's item noise is a part every seed shares (the items favour one
    side whichever seed trained it) plus a part of its own (each model's luck on each
    item). The seed spread of the differences already holds the second part, so the rule
    adds only the first: the covariance of two seeds' differences across the draws,
    averaged over the pairs of seeds (with one seed, its whole variance).
    """
    k = per_seed.shape[1]
    cov = np.atleast_2d(np.cov(per_seed, rowvar=False))
    if k == 1:
        return float(cov[0, 0])
    return float((cov.sum() - np.trace(cov)) / (k * (k - 1)))


class PairedNoise:
    """se_eval of a claim's difference by the paired bootstrap, items read from the grid
    cells under `root` (module doc)."""

    def __init__(self, root: str | Path, n_boot: int = N_BOOT, seed: int = 0):
        self.root, self.n_boot, self.seed = Path(root), n_boot, seed

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per chapter run
    def counts(self, key: str) -> ItemCounts | None:
        path = self.root / f"{key}.json.gz"
        if not path.is_file():
            return None
        with gzip.open(path, "rt") as f:
            items = json.load(f)["report"]["items"]
        return ItemCounts(pd.DataFrame(items))

    def _pairs(self, rows: pd.DataFrame) -> list[tuple[ItemCounts, ItemCounts]] | None:
        if rows is None or not {"cell", "teacher_cell"} <= set(rows.columns):
            return None
        pairs = []
        for cell, teacher in zip(rows.cell, rows.teacher_cell, strict=True):
            m = self.counts(cell) if isinstance(cell, str) else None
            t = self.counts(teacher) if isinstance(teacher, str) else None
            if m is None or t is None:
                return None
            pairs.append((m, t))
        return pairs

    def se(self, a: pd.DataFrame, b: pd.DataFrame | None = None, scale: float = 1.0
           ) -> float | None:
        """se_eval of mean AVG-% of `a` - scale x that of `b` (or of `a` alone): the root
        of the evaluation variance its seeds share (`shared_variance`). None when some row
        names no cell, or the two sides are not one row per shared seed."""
        a = a.sort_values("seed")
        b = b.sort_values("seed") if b is not None else None
        if b is not None and list(a.seed) != list(b.seed):
            return None
        pa = self._pairs(a)
        pb = self._pairs(b) if b is not None else []
        if not pa or pb is None or (b is not None and not pb):
            return None
        per_seed = paired_difference(pa, pb or None, scale, self.n_boot, self.seed)
        return math.sqrt(max(0.0, shared_variance(per_seed[1:])))
